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

With ``snapshots=n`` one run makes an ensemble of ``n`` (:mod:`.snapshots`): a main phase and
``n - 1`` short learning-rate cycles, each phase's end validated and kept as a member; the
result's ``members`` holds them. Early stopping does not apply there (every phase has to run for
its member to exist), and a stop request keeps the members made so far (or, before the first,
the best validated state as member 0). Its progress events carry the member being made in
``Progress.context`` (``member``, ``members``, ``snapshot``).

Each result carries its :class:`~.budget.TrainingBudget` (epochs run against planned, why it
stopped, seconds per epoch, and whether the time budget starved it), also saved in the
checkpoint's training metrics.

The encoder is built by a registered encoder kind (:mod:`.registry`; the built-in one by
default), and everything architecture-specific (learning-rate factors, frozen parts, burn-in)
comes through the encoder contract's optional members (:mod:`.protocol`). The data side (trial
split, trials in memory, batched validation predictions) is in :mod:`.training_data`, the
settings and the new encoder a run starts from in :mod:`.training_setup`, the learning-rate
schedule in :mod:`.snapshots`, and the result and its training metrics in :mod:`.training_result`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Progress
from .budget import EARLY_STOPPING, EPOCH_LIMIT, STOPPED_BY_USER, TIME_BUDGET
from .config import ENSEMBLE_METHODS, EncoderConfig, TrainConfig
from .registry import BUILTIN_KIND
from .snapshots import SnapshotKeeper, learning_rate_schedule
from .training_data import TrialData, hash_header, prediction_groups, split_positions
from .training_result import Outcome, RunFacts, TrainingResult, finish_model, finish_snapshots, now_since, snapshot_record
from .training_setup import new_encoder, resolve_configs

__all__ = ["TrainingResult", "train_encoder", "train_encoder_within_memory", "train_ensemble"]

_log = logging.getLogger("movie_reconstruction.train")

# The most time between progress events while training: closing the job (napari's Cancel) takes
# effect at an event, so this bounds how long a cancel waits, besides the step in progress.
PROGRESS_INTERVAL_SECONDS = 0.5


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


# long: the training loop's schedule, validation, early stopping, time budget, stop checks,
# snapshots and best-state keeping share their state; the data side already lives in .training_data.
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
    snapshots: int = 1,
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
    - ``kind``: the registered encoder kind to train (:func:`~.registry.register_encoder`);
    - ``snapshots``: members to make from this one run (:mod:`.snapshots`); 1: one model.

    Yields :class:`Progress`; returns :class:`TrainingResult` (with ``snapshots`` > 1: the last
    member's, with all of them in ``members``).
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
    schedule = learning_rate_schedule(steps, training, snapshots)
    keeper = SnapshotKeeper(schedule, snapshots)
    total_steps = schedule.total_steps
    facts = RunFacts(steps, str(device), [int(recording.trial_ids[i]) for i in train_pos],
                     [int(recording.trial_ids[i]) for i in val_pos], training.to_dict(), hasher.hexdigest())

    step_model = model
    if device.type == "cuda" and training.compile:
        step_model = torch.compile(model)
    autocast_ctx = (lambda: autocast(device)) if training.mixed_precision else None
    if autocast_ctx is None:
        import contextlib

        autocast_ctx = contextlib.nullcontext

    def stop_requested() -> bool:
        return stop is not None and stop.is_set()

    def time_fraction() -> float | None:
        """How much of the time budget is spent (None: no budget)."""
        return None if deadline is None else 1 - (deadline - budget_clock()) / (60 * training.max_minutes)

    def progress(message: str, metrics: dict) -> Progress:
        return Progress("training", global_step, total_steps, keeper.label() + message, metrics, context=keeper.context())

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
                yield progress(f"epoch {epoch}: validating", {"epoch": epoch})
        validation_seconds.append(time.perf_counter() - validation_started)
        return float(per_neuron_correlation(predictions, [r.cpu().numpy() for r in responses]).mean())

    def keep_snapshot() -> None:
        """The state just validated becomes the member of the phase in progress."""
        seconds, cpu_seconds = now_since(started, cpu_started)
        keeper.take(copy.deepcopy(model.state_dict()), global_step, time_fraction(), epochs=len(records) - 1,
                    val_corr=records[-1]["val_corr"], seconds=seconds, cpu_seconds=cpu_seconds, frames_seen=frames_seen)

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
    yield progress(f"epoch 0: val corr {initial:.3f}", {"epoch": 0, "val_corr": initial, "best_val_corr": initial})

    interrupted, epoch = False, 0
    # Until the schedule's last step: a snapshot cuts an epoch short, so epochs alone would end it early.
    while global_step < total_steps:
        epoch += 1
        model.train()
        losses = []
        for _ in range(min(steps, total_steps - global_step)):
            if stop_requested():
                interrupted, stopped_because, stop_reason = True, "stopped by request", STOPPED_BY_USER
                break
            if deadline is not None and budget_clock() > deadline:
                interrupted, stop_reason = True, TIME_BUDGET
                stopped_because = f"reached the {training.max_minutes:g}-minute {training.budget_clock} budget"
                break
            if losses and keeper.phase_over(global_step, time_fraction()):
                break  # a member is due: this epoch ends here and is validated, and its state is kept
            factor = schedule.factor(global_step, time_fraction())
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
            keeper.step_done()
            if heartbeat.due():
                yield progress(f"epoch {epoch}", {"epoch": epoch, "loss": float(np.mean(losses[-10:])),
                                                  "best_val_corr": best_corr})
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
        yield progress(f"epoch {epoch}: loss {record['loss']:.4f}, val corr {corr:.3f}",
                       {"epoch": epoch, "loss": record["loss"], "val_corr": corr, "best_val_corr": best_corr,
                        "lr": record["lr"]})
        if keeper.phase_over(global_step, time_fraction()):
            keep_snapshot()
        if interrupted:
            break
        if not keeper.is_ensemble and epochs_without_gain >= training.patience:
            stopped_because, stop_reason = f"no better validation correlation for {training.patience} epochs", EARLY_STOPPING
            break

    if keeper.is_ensemble:
        if stop_reason != STOPPED_BY_USER and keeper.last_phase_trained():
            keep_snapshot()  # the run ended (epochs or clock) just after validating its last phase
        members = finish_snapshots(model, facts, keeper, records)
        if stop_reason != STOPPED_BY_USER and len(members) < snapshots:  # a phase had no time left to train
            _log.warning("the time budget left no time for some learning-rate cycles: %d of %d snapshots made",
                         len(members), snapshots)
        if members:
            return dataclasses.replace(members[-1], members=members)
    # One model, or a snapshot run stopped before its first member: the best validated state.
    model.load_state_dict(best_state)
    seconds, cpu_seconds = now_since(started, cpu_started)
    snapshot = snapshot_record(keeper, 0, training.max_epochs, stop_reason) if keeper.is_ensemble else None
    result = finish_model(model, facts, Outcome(records, best_epoch, best_corr, stopped_because, stop_reason, seconds,
                                                cpu_seconds, frames_seen, snapshot))
    return dataclasses.replace(result, members=[result]) if keeper.is_ensemble else result


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
    method: str = "independent",
    **kwargs,
):
    """Train ``n_models`` encoders with different seeds, one after another, on one device; with
    ``method="snapshots"``, as the snapshots of one run (seeded with the first seed; :mod:`.snapshots`).

    ``seeds`` defaults to ``training.seed, training.seed + 1, ...``. With ``checkpoint_dir`` each
    model is saved as ``model_{k}`` there as soon as it is trained (a snapshot run's, when the run
    ends), so an interrupted run keeps the finished models. Yields :class:`Progress` (stage
    ``"model k/n"``, or ``"snapshots"``); returns a list of :class:`TrainingResult`.
    """
    if isinstance(config, str) and training is None:
        training = TrainConfig.preset(config)
    training = training or TrainConfig()
    if seeds is None:
        seeds = [training.seed + k for k in range(n_models or 1)]
    seeds = [int(s) for s in seeds]
    if n_models is not None and n_models != len(seeds):
        raise ValueError(f"n_models={n_models} but {len(seeds)} seeds were given")
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"method must be one of {ENSEMBLE_METHODS}, got {method!r}")
    runs = [(seeds[0], len(seeds))] if method == "snapshots" else [(seed, 1) for seed in seeds]
    results = []
    for k, (seed, members) in enumerate(runs):
        job = train_encoder_within_memory(recording, config, training.replace(seed=seed), snapshots=members, **kwargs)
        while True:
            try:
                event = next(job)
            except StopIteration as done:
                made = done.value.members if members > 1 else [done.value]
                break
            event.stage = "snapshots" if members > 1 else f"model {k + 1}/{len(seeds)}"
            yield event
        if checkpoint_dir is not None:
            from .checkpoint import save_encoder

            for offset, result in enumerate(made):
                save_encoder(result.encoder, Path(checkpoint_dir) / f"model_{len(results) + offset}")
        results += made
        stop = kwargs.get("stop")
        if stop is not None and stop.is_set():
            break
    return results
