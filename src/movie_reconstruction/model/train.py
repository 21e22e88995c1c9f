"""Training: random clips from training trials, a loss from the loss table (Poisson by default), AdamW with warm-up and cosine
decay (over ``max_epochs``, or over ``max_minutes`` when that budget runs out first), early
stopping on validation correlation, the best model kept.

``train_encoder`` is a generator (see :mod:`movie_reconstruction.progress`): it yields
:class:`~movie_reconstruction.progress.Progress` events (stage ``"training"``; ``metrics`` hold
``epoch``, ``loss``, ``val_corr``, ``best_val_corr``, ``lr``) at least every
``PROGRESS_INTERVAL_SECONDS`` while it trains or validates, and returns a :class:`TrainingResult`.
To stop early *and keep the result*, set the ``stop`` event (any object with ``is_set()``, e.g.
``threading.Event``): training ends after the current step (or forward pass of validation) and
the best model so far is returned. Closing the generator cancels without a result; it takes
effect at the next event, so within about one training step of the interval.

Each result carries its :class:`~.budget.TrainingBudget` (epochs run against planned, why it
stopped, seconds per epoch, and whether the time budget starved it), also saved in the
checkpoint's training metrics.

The encoder is built by a registered encoder kind (:mod:`.registry`; the built-in one by
default), and everything architecture-specific (learning-rate factors, frozen parts, burn-in)
comes through the encoder contract's optional members (:mod:`.protocol`). The data side (trial
split, trials in memory, batched validation predictions) is in :mod:`.training_data`, the
settings and the new encoder a run starts from in :mod:`.training_setup`.
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
from .budget import EARLY_STOPPING, EPOCH_LIMIT, STOPPED_BY_USER, TIME_BUDGET, TrainingBudget, describe_budget
from .config import EncoderConfig, TrainConfig
from .registry import BUILTIN_KIND
from .training_data import TrialData, hash_header, prediction_groups, split_positions
from .training_setup import new_encoder, resolve_configs

_log = logging.getLogger("movie_reconstruction.train")

# The most time between progress events while training: closing the job (napari's Cancel) takes
# effect at an event, so this bounds how long a cancel waits, besides the step in progress.
PROGRESS_INTERVAL_SECONDS = 0.5


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
    budget: TrainingBudget | None = None  # epochs run against planned, why it stopped, starved or not

    @property
    def frames_per_second(self) -> float:
        return self.frames_seen / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------------------- training
class _Heartbeat:
    """Says when the next progress event is due, so that events come often but not per step."""

    def __init__(self, interval: float):
        self.interval, self.last = interval, time.perf_counter()

    def due(self) -> bool:
        now = time.perf_counter()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


# long: the training loop's schedule, validation, early stopping, time budget, stop checks and
# best-state keeping share their state; the data side already lives in .training_data.
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
    architecture, training = resolve_configs(config, training, core_arch)
    loss_fn = get_loss(training.loss)
    device = pick_device(device if device is not None else training.device)
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)

    train_pos, val_pos = split_positions(recording)
    yield Progress("training", 0, None, f"loading {train_pos.size} training and {val_pos.size} validation trials")
    hasher = hashlib.sha256()
    hash_header(hasher, recording)
    data = TrialData(recording, train_pos, val_pos, hasher)
    data_hash = hasher.hexdigest()
    model = new_encoder(kind, recording, data, architecture, config if isinstance(config, str) else None,
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

    def stop_requested() -> bool:
        return stop is not None and stop.is_set()

    def validate(epoch: int, interruptible: bool):
        """Yields progress between forward passes; returns the mean validation correlation, or
        None when ``interruptible`` and a stop was requested before it finished."""
        from .metrics import per_neuron_correlation

        model.eval()
        validation_started = time.perf_counter()
        videos, responses, behavior = data.validation
        predictions = [None] * len(videos)
        for group, rates in prediction_groups(model, videos, behavior, training.eval_batch_frames, autocast_ctx):
            for k, r in zip(group, rates):
                predictions[k] = r
            if interruptible and stop_requested():
                return None
            if heartbeat.due():
                yield Progress("training", global_step, total_steps, f"epoch {epoch}: validating", {"epoch": epoch})
        validation_seconds.append(time.perf_counter() - validation_started)
        return float(per_neuron_correlation(predictions, [r.cpu().numpy() for r in responses]).mean())

    if training.budget_clock not in ("wall", "process"):
        raise ValueError(f"budget_clock must be 'wall' or 'process', got {training.budget_clock!r}")
    budget_clock = time.process_time if training.budget_clock == "process" else time.perf_counter
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = budget_clock() + 60 * training.max_minutes if training.max_minutes else None
    heartbeat = _Heartbeat(PROGRESS_INTERVAL_SECONDS)
    records: list[dict] = []
    validation_seconds: list[float] = []  # the last entry is the latest finished validation's
    stopped_because, stop_reason = "reached max_epochs", EPOCH_LIMIT
    frames_seen, global_step, epochs_without_gain = 0, 0, 0

    # The untrained model is the first "best": a stop request before any epoch still returns a model.
    initial = yield from validate(0, interruptible=False)
    records.append({"epoch": 0, "loss": float("nan"), "val_corr": initial, "lr": 0.0,
                    "seconds": time.perf_counter() - started, "validation_seconds": validation_seconds[-1]})
    best_corr, best_epoch, best_state = initial, 0, copy.deepcopy(model.state_dict())
    yield Progress("training", 0, total_steps, f"epoch 0: val corr {initial:.3f}",
                   {"epoch": 0, "val_corr": initial, "best_val_corr": initial})

    interrupted = False
    for epoch in range(1, training.max_epochs + 1):
        model.train()
        losses = []
        for _ in range(steps):
            if stop_requested():
                interrupted, stopped_because, stop_reason = True, "stopped by request", STOPPED_BY_USER
                break
            if deadline is not None and budget_clock() > deadline:
                interrupted, stop_reason = True, TIME_BUDGET
                stopped_because = f"reached the {training.max_minutes:g}-minute {training.budget_clock} budget"
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
            if heartbeat.due():
                yield Progress("training", global_step, total_steps, f"epoch {epoch}",
                               {"epoch": epoch, "loss": float(np.mean(losses[-10:])), "best_val_corr": best_corr})
        if not losses or stop_reason == STOPPED_BY_USER:
            break  # a stop request returns the best validated model at once: no validation of a partial epoch
        corr = yield from validate(epoch, interruptible=True)
        if corr is None:  # stopped while validating: this epoch's model is never compared, the best is kept
            stopped_because, stop_reason = "stopped by request", STOPPED_BY_USER
            break
        record = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "val_corr": corr,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
            "steps": len(losses),
            "validation_seconds": validation_seconds[-1],
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
            stopped_because, stop_reason = f"no better validation correlation for {training.patience} epochs", EARLY_STOPPING
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
        "stop_reason": stop_reason,
        "steps_per_epoch": steps,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "device": str(device),
        "train_trials": [int(recording.trial_ids[i]) for i in train_pos],
        "validation_trials": [int(recording.trial_ids[i]) for i in val_pos],
        "training": training.to_dict(),
        "history": records,
    }
    budget = describe_budget(model.training_metrics)
    model.training_metrics["budget"] = budget.to_dict()
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
        budget=budget,
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
