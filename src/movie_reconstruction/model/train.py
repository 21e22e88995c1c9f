"""Training: random clips from training trials, a loss from the loss table (Poisson by default), AdamW with warm-up and cosine
decay (over ``max_epochs``, or over ``max_minutes`` when that budget runs out first), early
stopping on validation correlation, the best model kept.

``train_encoder`` is a generator (see :mod:`movie_reconstruction.progress`): it yields
:class:`~movie_reconstruction.progress.Progress` events (stage ``"training"``; ``metrics`` hold
``epoch``, ``loss``, ``val_corr``, ``best_val_corr``, ``lr``) and returns a
:class:`TrainingResult`. To stop early *and keep the result*, set the ``stop`` event (any
object with ``is_set()``, e.g. ``threading.Event``): training ends after the current step and
the best model so far is returned. Closing the generator cancels without a result.

The encoder is built by a registered encoder kind (:mod:`.registry`; the built-in one by
default), and everything architecture-specific (learning-rate factors, frozen parts, burn-in)
comes through the encoder contract's optional members (:mod:`.protocol`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Progress
from .config import EncoderConfig, Normalization, TrainConfig
from .registry import BUILTIN_KIND

_log = logging.getLogger("movie_reconstruction.train")

VALIDATION_FALLBACK_FRACTION = 0.1


@dataclass
class TrainingResult:
    encoder: object  # Encoder, in eval mode on the training device
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    best_epoch: int = 0
    best_val_corr: float = float("nan")
    stopped_because: str = ""
    seconds: float = 0.0
    device: str = "cpu"
    data_hash: str = ""
    frames_seen: int = 0
    cpu_seconds: float = 0.0  # CPU time of this process (all threads) while training

    @property
    def frames_per_second(self) -> float:
        return self.frames_seen / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------------------- data
class _TrialData:
    """Train/validation trials held in memory as float32 tensors (frames are small: 36x64)."""

    def __init__(self, recording, train_positions, validation_positions, hasher):
        import torch

        def load(positions):
            videos, responses, behavior = [], [], []
            for i in positions:
                trial = recording.trial(int(i))
                for array in (trial.video, trial.responses, trial.behavior):
                    hasher.update(np.ascontiguousarray(array).tobytes())
                # Copies: trial arrays may be read-only memory maps.
                videos.append(torch.from_numpy(np.array(trial.video, dtype=np.float32)))
                responses.append(torch.from_numpy(np.array(trial.responses, dtype=np.float32)))
                behavior.append(torch.from_numpy(np.array(trial.behavior, dtype=np.float32)))
            return videos, responses, behavior

        self.train = load(train_positions)
        self.validation = load(validation_positions)
        self.lengths = np.array([v.shape[0] for v in self.train[0]])

    def to(self, device):
        self.train = tuple([t.to(device) for t in part] for part in self.train)
        self.validation = tuple([t.to(device) for t in part] for part in self.validation)
        return self

    def normalization(self) -> Normalization:
        videos, _, behavior = self.train
        n = sum(v.numel() for v in videos)
        mean = sum(float(v.double().sum()) for v in videos) / n
        var = sum(float(((v.double() - mean) ** 2).sum()) for v in videos) / n
        b = np.concatenate([x.cpu().numpy() for x in behavior], axis=1)
        b_mean = b.mean(1)
        b_std = b.std(1)
        b_std = np.where(b_std > 1e-6, b_std, 1.0)
        return Normalization(
            video_mean=mean,
            video_std=max(math.sqrt(var), 1e-3),
            behavior_mean=tuple(float(v) for v in b_mean),
            behavior_std=tuple(float(v) for v in b_std),
        )

    def mean_response(self) -> np.ndarray:
        _, responses, _ = self.train
        total = sum(r.double().sum(1) for r in responses)
        return (total / float(self.lengths.sum())).cpu().numpy()

    def sample(self, rng: np.random.Generator, batch: int, clip: int):
        import torch

        videos, responses, behavior = self.train
        weights = self.lengths / self.lengths.sum()
        trials = rng.choice(len(videos), size=batch, p=weights)
        v, r, b = [], [], []
        for k in trials:
            start = int(rng.integers(0, self.lengths[k] - clip + 1))
            v.append(videos[k][start : start + clip])
            r.append(responses[k][:, start : start + clip])
            b.append(behavior[k][:, start : start + clip])
        return torch.stack(v), torch.stack(r), torch.stack(b)


def _split_positions(recording):
    train = recording.indices("train")
    validation = recording.indices("validation")
    if train.size == 0:
        raise InputError("the recording has no training trials", recording.source)
    if validation.size == 0:
        # No validation tier: hold out the last tenth of the training trials (at least one).
        n_val = max(1, int(round(VALIDATION_FALLBACK_FRACTION * train.size)))
        if train.size - n_val < 1:
            raise InputError("need at least two training trials when there is no validation tier", recording.source)
        train, validation = train[:-n_val], train[-n_val:]
    return train, validation


def _hash_header(hasher, recording) -> None:
    hasher.update(np.ascontiguousarray(np.asarray(recording.neurons.ids).astype(str)).tobytes())
    hasher.update(repr((float(recording.frame_rate), tuple(recording.behavior_channels))).encode())


# ---------------------------------------------------------------------------------- training
CORE_FIELDS = (
    "channels", "blocks", "stem_kernel", "block_kernel", "temporal_kernel", "block_temporal_kernel", "stride", "residual",
)


def _resolve_configs(config, training, core_architecture):
    """The architecture and training settings to use; a pretrained core's shape wins over ``config``'s."""
    from dataclasses import replace

    if config is None:
        config = "small"
    if isinstance(config, str):
        architecture = EncoderConfig.preset(config)
        training = training or TrainConfig.preset(config)
    else:
        architecture = config
        training = training or TrainConfig()
    if core_architecture is not None:
        architecture = replace(architecture, **{f: getattr(core_architecture, f) for f in CORE_FIELDS})
    return architecture, training


def _new_encoder(kind, recording, data, architecture, preset, core_state, use_positions):
    """A new encoder of the registered ``kind`` for ``recording``, checked against the contract."""
    from .protocol import check_encoder
    from .registry import EncoderSpec, encoder_factory

    spec = EncoderSpec(
        n_neurons=recording.n_neurons,
        frame_shape=tuple(recording.frame_shape),
        behavior_channels=tuple(recording.behavior_channels),
        neuron_ids=np.asarray(recording.neurons.ids),
        normalization=data.normalization(),
        mean_response=data.mean_response(),
        neuron_positions=recording.neurons.positions if use_positions else None,
        architecture=architecture,
        preset=preset,
        pretrained_core=core_state,
    )
    model = encoder_factory(kind).build(spec)
    check_encoder(model, f"built by encoder kind {kind!r}", error=TypeError)
    return model


def _predict_trials(model, videos, behavior, eval_frames, autocast_ctx):
    """Eval-mode predictions (numpy, neurons x T) for lists of trial tensors, batching equal lengths."""
    import torch

    out = [None] * len(videos)
    order = sorted(range(len(videos)), key=lambda i: videos[i].shape[0])
    with torch.no_grad():
        i = 0
        while i < len(order):
            t = videos[order[i]].shape[0]
            per_batch = max(1, eval_frames // max(t, 1))
            group = [order[i]]
            while i + len(group) < len(order) and len(group) < per_batch and videos[order[i + len(group)]].shape[0] == t:
                group.append(order[i + len(group)])
            with autocast_ctx():
                rates = model(torch.stack([videos[k] for k in group]), torch.stack([behavior[k] for k in group]))
            for k, r in zip(group, rates.float().cpu().numpy()):
                out[k] = r
            i += len(group)
    return out


# long: the training loop's schedule, validation, early stopping, time budget and best-state keeping
# share their state; to be split with the encoder registry (issue 22).
def train_encoder(
    recording,
    config: EncoderConfig | str | None = "small",
    training: TrainConfig | None = None,
    *,
    device=None,
    init_core=None,
    stop=None,
    use_positions: bool = True,
    kind: str = BUILTIN_KIND,
):
    """Train one encoder on ``recording``'s train trials, validating on its validation trials.

    - ``config``: an :class:`EncoderConfig` or a preset name (``"fast"``, ``"small"``, ``"large"``);
      other encoder kinds get the preset's name and may ignore the built-in's architecture;
    - ``training``: a :class:`TrainConfig` (default: the preset's);
    - ``device``: overrides ``training.device`` (``"auto"``: CUDA, then MPS, then CPU);
    - ``init_core``: ``"bundled"`` (the pretrained core shipped with the package), a path to a core
      ``.safetensors`` file or an encoder checkpoint, or None (from scratch). Its architecture
      replaces ``config``'s. ``training.core_lr_scale`` sets how fast it is fine-tuned (0 freezes it);
    - ``stop``: an object with ``is_set()``; when set, training ends and the best model is returned;
    - ``use_positions``: initialise receptive-field centres from the recording's neuron positions;
    - ``kind``: the registered encoder kind to train (:func:`~.registry.register_encoder`).

    Yields :class:`Progress`; returns :class:`TrainingResult`.
    """
    # One long function on purpose: the optimiser, the schedule, the budget, the best model and
    # the progress counters are shared by every step; split up, they would travel as a dozen
    # arguments. The parts that vary by architecture are behind model.protocol.
    import torch

    from ..device import autocast, pick_device
    from ..losses import get_loss
    from .protocol import param_groups, training_rates
    from .protocol import history_frames as history_frames_of

    core_state, core_arch = None, None
    if init_core is not None:
        from .pretrained import load_core_weights

        core_state, core_arch = load_core_weights(init_core)
    architecture, training = _resolve_configs(config, training, core_arch)
    loss_fn = get_loss(training.loss)
    device = pick_device(device if device is not None else training.device)
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)

    train_pos, val_pos = _split_positions(recording)
    yield Progress("training", 0, None, f"loading {train_pos.size} training and {val_pos.size} validation trials")
    hasher = hashlib.sha256()
    _hash_header(hasher, recording)
    data = _TrialData(recording, train_pos, val_pos, hasher)
    data_hash = hasher.hexdigest()
    model = _new_encoder(kind, recording, data, architecture, config if isinstance(config, str) else None,
                         core_state, use_positions)
    clip = int(min(training.clip_frames, data.lengths.min()))
    burn_in = int(min(history_frames_of(model) - 1, clip // 2))
    if clip - burn_in < 1:
        raise InputError(f"training trials are too short ({data.lengths.min()} frames)", recording.source)
    model.to(device)
    data.to(device)

    groups = param_groups(model, training)
    optimizer = torch.optim.AdamW(groups)
    base_lrs = [g["lr"] for g in groups]

    train_frames = int(data.lengths.sum())
    steps = training.steps_per_epoch or max(1, math.ceil(train_frames / (training.batch_size * (clip - burn_in))))
    total_steps = steps * training.max_epochs
    warmup = max(1, int(training.warmup_epochs * steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if deadline is not None:
            # Under a time budget the decay follows whichever runs out first, epochs or minutes,
            # so that a run stopped by the clock has still annealed its learning rate.
            progress = max(progress, 1 - (deadline - budget_clock()) / (60 * training.max_minutes))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    step_model = model
    if device.type == "cuda" and training.compile:
        step_model = torch.compile(model)
    autocast_ctx = (lambda: autocast(device)) if training.mixed_precision else None
    if autocast_ctx is None:
        import contextlib

        autocast_ctx = contextlib.nullcontext

    def validate() -> float:
        from .metrics import per_neuron_correlation

        model.eval()
        videos, responses, behavior = data.validation
        preds = _predict_trials(model, videos, behavior, training.eval_batch_frames, autocast_ctx)
        return float(per_neuron_correlation(preds, [r.cpu().numpy() for r in responses]).mean())

    if training.budget_clock not in ("wall", "process"):
        raise ValueError(f"budget_clock must be 'wall' or 'process', got {training.budget_clock!r}")
    budget_clock = time.process_time if training.budget_clock == "process" else time.perf_counter
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = budget_clock() + 60 * training.max_minutes if training.max_minutes else None
    records: list[dict] = []
    best_corr, best_epoch, best_state = -math.inf, 0, None
    stopped_because = "reached max_epochs"
    frames_seen, global_step, epochs_without_gain = 0, 0, 0

    initial = validate()
    records.append({"epoch": 0, "loss": float("nan"), "val_corr": initial, "lr": 0.0, "seconds": 0.0})
    best_corr, best_state = initial, copy.deepcopy(model.state_dict())
    yield Progress("training", 0, total_steps, f"epoch 0: val corr {initial:.3f}",
                   {"epoch": 0, "val_corr": initial, "best_val_corr": initial})

    interrupted = False
    for epoch in range(1, training.max_epochs + 1):
        model.train()
        losses = []
        for s in range(steps):
            if stop is not None and stop.is_set():
                interrupted, stopped_because = True, "stopped by request"
                break
            if deadline is not None and budget_clock() > deadline:
                interrupted, stopped_because = True, f"reached the {training.max_minutes:g}-minute {training.budget_clock} budget"
                break
            factor = lr_factor(global_step)
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * factor
            video, responses, behavior = data.sample(rng, training.batch_size, clip)
            with autocast_ctx():
                rates = training_rates(step_model, model, video, behavior, burn_in)
            loss = loss_fn(rates.float(), responses[:, :, burn_in:]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            frames_seen += video.shape[0] * video.shape[1]
            global_step += 1
            if s % 10 == 9:
                yield Progress("training", global_step, total_steps, f"epoch {epoch}",
                               {"epoch": epoch, "loss": float(np.mean(losses[-10:])), "best_val_corr": best_corr})
        if not losses:
            break
        corr = validate()
        record = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "val_corr": corr,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
            "steps": len(losses),
        }
        records.append(record)
        if corr > best_corr:
            best_corr, best_epoch, epochs_without_gain = corr, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            epochs_without_gain += 1
        yield Progress("training", global_step, total_steps,
                       f"epoch {epoch}: loss {record['loss']:.4f}, val corr {corr:.3f}",
                       {"epoch": epoch, "loss": record["loss"], "val_corr": corr, "best_val_corr": best_corr,
                        "lr": record["lr"]})
        if interrupted:
            break
        if epochs_without_gain >= training.patience:
            stopped_because = f"no better validation correlation for {training.patience} epochs"
            break

    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    seconds = time.perf_counter() - started
    model.training_metrics = {
        "best_epoch": best_epoch,
        "best_val_corr": best_corr,
        "epochs": len(records) - 1,
        "stopped_because": stopped_because,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "device": str(device),
        "train_trials": [int(recording.trial_ids[i]) for i in train_pos],
        "validation_trials": [int(recording.trial_ids[i]) for i in val_pos],
        "training": training.to_dict(),
        "history": records,
    }
    model.data_hash = data_hash
    return TrainingResult(
        encoder=model,
        history=records,
        best_epoch=best_epoch,
        best_val_corr=best_corr,
        stopped_because=stopped_because,
        seconds=seconds,
        device=str(device),
        data_hash=data_hash,
        frames_seen=frames_seen,
        cpu_seconds=time.process_time() - cpu_started,
    )


def train_encoder_within_memory(recording, config: EncoderConfig | str | None = "small",
                                training: TrainConfig | None = None, *, device=None, **kwargs):
    """:func:`train_encoder`, started again when the device runs out of memory: with half as many
    clips per batch, and once a single clip does not fit, on the CPU. Each retry is announced
    (a warning and a progress message). Callers keep the members already trained, so only the
    member in progress starts over. Same arguments and result as :func:`train_encoder`."""
    import torch

    from ..device import is_out_of_memory, pick_device, release_device_memory

    if training is None:
        training = TrainConfig.preset(config) if isinstance(config, str) else TrainConfig()
    target = pick_device(device if device is not None else training.device)
    while True:
        try:
            return (yield from train_encoder(recording, config, training, device=str(target), **kwargs))
        except Exception as exc:
            if not is_out_of_memory(exc) or (training.batch_size == 1 and target.type == "cpu"):
                raise
        release_device_memory(target)
        if training.batch_size > 1:
            smaller = training.batch_size // 2
            message = (f"out of memory on {target} with {training.batch_size} clips per batch: "
                       f"training this model again with {smaller}")
            training = training.replace(batch_size=smaller)
        else:
            message = f"out of memory on {target} with one clip per batch: training this model again on the CPU (slower)"
            target = torch.device("cpu")
        _log.warning(message)
        yield Progress("training", 0, None, message)


def train_ensemble(
    recording,
    config: EncoderConfig | str | None = "small",
    training: TrainConfig | None = None,
    *,
    n_models: int | None = None,
    seeds=None,
    checkpoint_dir: str | Path | None = None,
    **kwargs,
):
    """Train ``n_models`` encoders with different seeds, one after another, on one device.

    ``seeds`` defaults to ``training.seed, training.seed + 1, ...``. With ``checkpoint_dir`` each
    model is saved as ``model_{k}`` there as soon as it is trained, so an interrupted run keeps the
    finished models. Yields :class:`Progress` (stage ``"model k/n"``); returns a list of
    :class:`TrainingResult`.
    """
    if isinstance(config, str) and training is None:
        training = TrainConfig.preset(config)
    training = training or TrainConfig()
    if seeds is None:
        seeds = [training.seed + k for k in range(n_models or 1)]
    seeds = [int(s) for s in seeds]
    if n_models is not None and n_models != len(seeds):
        raise ValueError(f"n_models={n_models} but {len(seeds)} seeds were given")
    results = []
    for k, seed in enumerate(seeds):
        job = train_encoder_within_memory(recording, config, training.replace(seed=seed), **kwargs)
        while True:
            try:
                event = next(job)
            except StopIteration as done:
                results.append(done.value)
                break
            event.stage = f"model {k + 1}/{len(seeds)}"
            yield event
        if checkpoint_dir is not None:
            from .checkpoint import save_encoder

            save_encoder(results[-1].encoder, Path(checkpoint_dir) / f"model_{k}")
        stop = kwargs.get("stop")
        if stop is not None and stop.is_set():
            break
    return results
