"""Reconstruct a movie from recorded activity by gradient descent on its pixels.

The method follows Bauer, Margrie & Clopath (eLife 2025): start from a grey video, predict
the responses with the trained encoder (behaviour fixed at its recorded values), take the
gradient of the Poisson negative log-likelihood of the recorded responses with respect to
the pixels (or of another loss from the loss table, ``ReconstructionConfig.loss``), normalise it, multiply it by the update mask, clip it, step with momentum (or
Adam) and clip the pixels to the valid 0..255 range.

Two things differ from the paper, both because our encoder is causal over the whole clip:
each step is one forward/backward pass over the whole movie per model (the paper cuts the
clip into 35 overlapping 32-frame windows and normalises each window's gradient), and
several trials are optimised together as one batch. The paper's loop is kept as a
benchmark baseline in :mod:`.windowed`.

Ensembles: by default every member reconstructs its own movie and the movies are averaged
(the paper's way); ``ensemble="average_gradients"`` instead optimises one shared movie with
the members' averaged (normalised) gradients. The optional 3D Gaussian blur (sigma 0.5 in
frames and pixels, as in the paper) is applied to the averaged movie at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..losses import DEFAULT_LOSS, get_loss, poisson_nll  # noqa: F401 - poisson_nll: imported from here by callers
from ..progress import Job, Progress
from ..recording import Recording, Trial

_log = logging.getLogger("movie_reconstruction.reconstruct")

OPTIMIZERS = ("adam", "momentum")
ENSEMBLE_MODES = ("average_movies", "average_gradients")


@dataclass(frozen=True)
class ReconstructionConfig:
    """Settings of the pixel optimisation. The defaults are the tool's tested defaults.

    ``learning_rate`` is in grey levels per step for a pixel whose normalised gradient is
    one (gradients are divided by their root mean square inside the update mask, so the
    step size does not depend on the number of neurons or the loss scale).
    """

    iterations: int = 200
    optimizer: str = "adam"
    learning_rate: float = 4.0
    momentum: float = 0.9  # for optimizer="momentum"
    gradient_clip: float = 3.0  # in units of the gradient's RMS inside the update mask
    ensemble: str = "average_movies"
    blur_sigma: float | None = 0.5  # 3D Gaussian blur of the final movie; None or 0 = off
    start_grey: float = 128.0  # the grey level of the starting video
    start_noise: float = 0.0  # std of Gaussian noise added to the grey start (grey levels; uses the seed)
    pixel_range: tuple[float, float] = (0.0, 255.0)
    early_stopping: bool = True
    # Chosen on the twin's validation trials (docs/reconstruction_benchmark.md): the masked
    # correlation peaks after about 40 to 60 steps and then falls slowly as the pixels fit response
    # noise, so stopping at the loss's knee is both faster and no worse.
    patience: int = 10  # steps without enough improvement before stopping
    min_improvement: float = 0.01  # fraction of the total improvement so far that counts as progress
    min_iterations: int = 30
    batch_size: int = 10  # trials optimised together
    # Compute once what the fixed behaviour and the update mask leave unchanged (models that
    # offer ``prepare``, as our Encoder does): exact, so off only to measure what it saves.
    reuse_fixed_parts: bool = True
    preview_every: int = 10  # steps between preview frames (0 = only the final one)
    seed: int = 0
    loss: str = DEFAULT_LOSS  # a name from the loss table (movie_reconstruction.losses)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.ensemble not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble must be one of {ENSEMBLE_MODES}, got {self.ensemble!r}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        get_loss(self.loss)  # ValueError naming the known losses
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        lo, hi = self.pixel_range
        if not lo < hi:
            raise ValueError(f"pixel_range must be (low, high) with low < high, got {self.pixel_range}")
        object.__setattr__(self, "pixel_range", (float(lo), float(hi)))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Reconstruction:
    """The result of :func:`reconstruct`.

    ``movies`` is ``(trials, T, H, W)`` float32 in 0..255: the ensemble average, blurred if
    asked. ``member_movies`` is ``(members, trials, T, H, W)`` before averaging and blurring
    (one member when gradients were averaged). ``loss_history`` is ``(steps,)`` mean loss
    (``config.loss``; Poisson NLL by default) per neuron and frame over trials and members; ``member_loss_history`` is
    ``(members, steps)``. ``mask`` is the transparency mask (alpha, ``(H, W)``) that was used.
    """

    movies: np.ndarray
    member_movies: np.ndarray
    loss_history: np.ndarray
    member_loss_history: np.ndarray
    config: Any  # ReconstructionConfig, or WindowedConfig for the baseline
    mask: np.ndarray
    trial_ids: np.ndarray
    iterations_run: int
    stopped_early: bool
    elapsed_s: float
    device: str
    extra: dict = field(default_factory=dict)

    @property
    def movie(self) -> np.ndarray:
        """The reconstructed movie ``(T, H, W)`` of a single-trial reconstruction."""
        if self.movies.shape[0] != 1:
            raise ValueError(f"this reconstruction holds {self.movies.shape[0]} trials; index .movies instead")
        return self.movies[0]

    @property
    def update_mask(self) -> np.ndarray:
        return self.mask >= 0.5

    @property
    def evaluation_mask(self) -> np.ndarray:
        return self.mask >= 1.0

    def save(self, folder: str | Path) -> Path:
        """Write ``movies.npy``, ``member_movies.npy``, ``loss.npy``, ``mask.npy`` and
        ``reconstruction.json`` into ``folder`` atomically."""
        from .._atomic import atomic_path

        folder = Path(folder)
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            np.save(tmp / "movies.npy", self.movies.astype(np.float32))
            np.save(tmp / "member_movies.npy", self.member_movies.astype(np.float32))
            np.save(tmp / "loss.npy", self.member_loss_history.astype(np.float32))
            np.save(tmp / "mask.npy", self.mask.astype(np.float32))
            meta = {
                "config": self.config.to_dict(),
                "trial_ids": [int(i) for i in self.trial_ids],
                "iterations_run": self.iterations_run,
                "stopped_early": self.stopped_early,
                "elapsed_s": self.elapsed_s,
                "device": self.device,
                "extra": self.extra,
            }
            (tmp / "reconstruction.json").write_text(json.dumps(meta, indent=1, default=_json_default))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Reconstruction:
        folder = Path(folder)
        meta_path = folder / "reconstruction.json"
        if not meta_path.exists():
            raise InputError("not a saved reconstruction (reconstruction.json is missing)", folder)
        meta = json.loads(meta_path.read_text())
        config = dict(meta["config"])
        config["pixel_range"] = tuple(config["pixel_range"])
        if "window" in config:  # a windowed-baseline result
            from .windowed import WindowedConfig

            config_type = WindowedConfig
        else:
            config_type = ReconstructionConfig
        losses = np.load(folder / "loss.npy")
        return cls(
            movies=np.load(folder / "movies.npy"),
            member_movies=np.load(folder / "member_movies.npy"),
            loss_history=losses.mean(0),
            member_loss_history=losses,
            config=config_type(**config),
            mask=np.load(folder / "mask.npy"),
            trial_ids=np.asarray(meta["trial_ids"]),
            iterations_run=int(meta["iterations_run"]),
            stopped_early=bool(meta["stopped_early"]),
            elapsed_s=float(meta["elapsed_s"]),
            device=str(meta["device"]),
            extra=meta.get("extra", {}),
        )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# ---------------------------------------------------------------------------- inputs
def as_model_list(models) -> list:
    """One model or a sequence of models -> a non-empty list, checked against the encoder contract."""
    import torch

    from ..model.protocol import check_encoder

    if isinstance(models, torch.nn.Module):
        models = [models]
    models = list(models)
    if not models:
        raise ValueError("no models given")
    first = models[0]
    for model in models:
        check_encoder(model, getattr(model, "checkpoint_path", None), error=TypeError)
        if tuple(model.frame_shape) != tuple(first.frame_shape) or int(model.n_neurons) != int(first.n_neurons):
            raise ValueError(
                "ensemble members disagree: frame shapes "
                f"{tuple(model.frame_shape)} vs {tuple(first.frame_shape)}, neurons {model.n_neurons} vs {first.n_neurons}"
            )
    return models


def as_trial_list(trials) -> list[Trial]:
    if isinstance(trials, Trial):
        return [trials]
    if isinstance(trials, Recording):
        return list(trials)
    trials = list(trials)
    if not trials:
        raise ValueError("no trials given")
    for trial in trials:
        if not isinstance(trial, Trial):
            raise TypeError(f"expected Trial objects, got {type(trial).__name__}")
    return trials


def behavior_for(model, trial: Trial) -> np.ndarray:
    """The trial's behaviour channels in the order the model wants them, ``(C, T)``."""
    wanted = tuple(model.behavior_channels)
    missing = [name for name in wanted if name not in trial.behavior_channels]
    if missing:
        raise InputError(
            f"trial {trial.trial_id} has no behaviour channel(s) {missing} that the encoder needs "
            f"(it has {list(trial.behavior_channels)})"
        )
    if not wanted:
        return np.zeros((0, trial.n_frames), np.float32)
    return np.stack([trial.channel(name) for name in wanted]).astype(np.float32)


def check_trials(models, trials: list[Trial], neurons: np.ndarray | None) -> np.ndarray | None:
    """Check frame shapes and neuron counts; return the response rows to use (or None for all)."""
    model = models[0]
    n_model = int(model.n_neurons)
    for trial in trials:
        if tuple(trial.video.shape[1:]) != tuple(model.frame_shape):
            raise InputError(
                f"trial {trial.trial_id} has frames of {tuple(trial.video.shape[1:])}, the encoder expects "
                f"{tuple(model.frame_shape)}"
            )
        n = trial.responses.shape[0]
        expected = n_model if neurons is None else (n_model, len(neurons))
        if neurons is None and n != n_model:
            raise InputError(f"trial {trial.trial_id} has {n} neurons, the encoder predicts {n_model}")
        if neurons is not None and n not in expected:
            raise InputError(
                f"trial {trial.trial_id} has {n} neurons; expected {n_model} (all) or {len(neurons)} (the subset)"
            )
    if neurons is not None:
        neurons = np.asarray(neurons, dtype=np.int64)
        if neurons.ndim != 1 or neurons.size == 0:
            raise ValueError("neurons must be a non-empty 1-D index array")
        if neurons.min() < 0 or neurons.max() >= n_model:
            raise IndexError(f"neuron index out of range for {n_model} neurons")
    return neurons


def resolve_mask(mask, models, frame_shape) -> np.ndarray:
    """An alpha map ``(H, W)``: the given one, the models' own (averaged), or all ones."""
    from .mask import TransparencyMask, load_mask, mask_path_for

    if mask is None:
        found = [getattr(m, "transparency_mask", None) for m in models]
        for i, model in enumerate(models):
            # a mask saved beside an encoder checkpoint (see mask.save_mask) is picked up too
            checkpoint = getattr(model, "checkpoint_path", None)
            if found[i] is None and checkpoint is not None and mask_path_for(checkpoint).is_file():
                found[i] = load_mask(checkpoint)
        found = [m for m in found if m is not None]
        if found:
            alphas = [np.asarray(m.alpha if isinstance(m, TransparencyMask) else m, np.float32) for m in found]
            alpha = np.mean(alphas, axis=0)
        else:
            alpha = np.ones(frame_shape, np.float32)
    elif isinstance(mask, TransparencyMask):
        alpha = mask.alpha
    else:
        alpha = np.asarray(mask, np.float32)
    if alpha.shape != tuple(frame_shape):
        raise InputError(f"mask has shape {alpha.shape}, the frames are {tuple(frame_shape)}")
    if not (alpha >= 0.5).any():
        raise InputError("the mask's update region (alpha >= 0.5) is empty")
    return alpha.astype(np.float32)


@contextlib.contextmanager
def models_prepared(models, device):
    """Evaluation mode on ``device`` with frozen parameters, for optimising inputs; all three
    are restored afterwards.

    Freezing is for speed as much as tidiness: the readout's custom backward computes every
    gradient its inputs require, so with trainable parameters a pixel step also paid for the
    readout's grid and weight gradients (8% of a small-preset step on a CPU), and a
    ``backward()`` would leave gradients on the model.
    """
    import torch

    states = [
        (m, m.training, next(m.parameters(), torch.empty(0)).device, [(p, p.requires_grad) for p in m.parameters()])
        for m in models
    ]
    try:
        for model in models:
            model.eval()
            model.to(device)
            for parameter in model.parameters():
                parameter.requires_grad_(False)
        yield models
    finally:
        for model, was_training, original_device, flags in states:
            model.train(was_training)
            model.to(original_device)
            for parameter, flag in flags:
                parameter.requires_grad_(flag)


# ---------------------------------------------------------------------------- the loop
def normalise_gradient(grad, update, clip: float, eps: float = 1e-12):
    """Divide each trial's gradient by its RMS inside the update mask, zero it outside, clip it."""
    import torch

    masked = grad * update
    count = update.sum() * grad.shape[1]
    rms = (masked.pow(2).sum(dim=(1, 2, 3), keepdim=True) / count).sqrt()
    normalised = masked / (rms + eps)
    if clip and clip > 0:
        normalised = torch.clamp(normalised, -clip, clip)
    return normalised


def blur_movies(movies: np.ndarray, sigma: float | None) -> np.ndarray:
    """3D Gaussian blur over (frames, rows, columns) of each movie in ``(..., T, H, W)``."""
    if not sigma:
        return movies
    from scipy.ndimage import gaussian_filter

    flat = movies.reshape((-1,) + movies.shape[-3:])
    out = np.stack([gaussian_filter(m, sigma=sigma, mode="nearest") for m in flat])
    return out.reshape(movies.shape).astype(np.float32)


class _PlateauStopper:
    """Stop when the last ``patience`` steps improved the loss by less than ``min_improvement``
    of the improvement made since the start (a scale-free test; the NLL's offset is arbitrary)."""

    def __init__(self, patience: int, min_improvement: float, min_iterations: int):
        self.patience, self.min_improvement, self.min_iterations = patience, min_improvement, min_iterations
        self.history: list[float] = []

    def should_stop(self, loss: float) -> bool:
        self.history.append(loss)
        n = len(self.history)
        if n < max(self.min_iterations, self.patience + 1):
            return False
        best_before = min(self.history[: n - self.patience])
        best_now = min(self.history)
        total = self.history[0] - best_now
        if total <= 0:
            return True
        return (best_before - best_now) < self.min_improvement * total


def reconstruct(
    models,
    trials,
    config: ReconstructionConfig | None = None,
    *,
    mask=None,
    neurons=None,
    device=None,
) -> Job[Reconstruction]:
    """Reconstruct the movie of each trial from its recorded responses (a job generator).

    ``models`` is one encoder or an ensemble (a sequence); ``trials`` a :class:`Trial`, a
    sequence of them or a :class:`Recording`. ``mask`` is an alpha map ``(H, W)`` or a
    :class:`~.mask.TransparencyMask` (default: the models' ``transparency_mask`` attribute,
    else the whole frame). ``neurons`` restricts the loss to these model outputs (the rows of
    the trials' responses, which may hold all neurons or only the subset). ``device`` is
    ``None``/``"auto"`` (CUDA, then MPS, then CPU), or a device name.

    Yields :class:`~movie_reconstruction.progress.Progress` events (stage
    ``"reconstruction"``) whose ``preview`` is the current ensemble-mean movie of the batch,
    ``(trials in batch, T, H, W)`` float32, every ``config.preview_every`` steps. Returns a
    :class:`Reconstruction`. Closing the generator cancels at the next event and leaves the
    models as they were.
    """
    import torch

    from ..device import describe, pick_device, release_device_memory

    config = config or ReconstructionConfig()
    models = as_model_list(models)
    trials = as_trial_list(trials)
    neurons = check_trials(models, trials, neurons)
    frame_shape = tuple(models[0].frame_shape)
    alpha = resolve_mask(mask, models, frame_shape)
    device = pick_device(device)

    lengths = sorted({t.n_frames for t in trials})
    if len(lengths) > 1:
        raise InputError(f"trials have different lengths {lengths}; reconstruct each length in its own call")
    queue = [list(range(s, min(s + config.batch_size, len(trials)))) for s in range(0, len(trials), config.batch_size)]

    n_members = len(models) if config.ensemble == "average_movies" else 1
    member_movies = np.zeros((n_members, len(trials), trials[0].n_frames, *frame_shape), np.float32)
    finished: list[tuple[list[int], list[list[float]]]] = []  # (batch, losses[member][step])
    steps = {"done": 0, "total": config.iterations * len(queue)}
    stopped_early_all = True
    out_of_memory: list[str] = []
    start_time = time.perf_counter()

    generator = torch.Generator().manual_seed(int(config.seed))
    with models_prepared(models, device):
        while queue:
            batch = queue.pop(0)
            noise_state = generator.get_state()
            try:
                losses, stopped_early, movies = yield from _optimise_batch(
                    models, [trials[i] for i in batch], config, alpha, neurons, device, generator, steps,
                    f"batch {len(finished) + 1}/{len(finished) + len(queue) + 1}")
            except Exception as exc:
                fallback = _after_out_of_memory(exc, len(batch), device)
                if fallback is None:
                    raise
                del exc  # its traceback holds the batch's device tensors
                size, new_device = fallback
                message = _out_of_memory_message(len(batch), size, device, new_device)
                out_of_memory.append(message)
                _log.warning(message)
                release_device_memory(device)
                if new_device != device:
                    device = new_device
                    for model in models:
                        model.to(device)
                generator.set_state(noise_state)  # the retry starts from the same noise
                queue[:0] = [batch[s:s + size] for s in range(0, len(batch), size)]
                steps["total"] = steps["done"] + config.iterations * len(queue)
                yield Progress(stage="reconstruction", step=steps["done"], total=steps["total"], message=message)
                continue
            stopped_early_all &= stopped_early
            finished.append((batch, losses))
            member_movies[:, batch] = movies

    movies = blur_movies(member_movies.mean(0), config.blur_sigma)
    movies = np.clip(movies, *config.pixel_range).astype(np.float32)
    # loss histories of batches can differ in length (early stopping): pad with their last value
    longest = max(len(losses[0]) for _, losses in finished)
    padded = np.array(
        [[h + [h[-1]] * (longest - len(h)) for h in losses] for _, losses in finished], np.float64
    )  # (batches, members, steps)
    weights = np.array([len(b) for b, _ in finished], np.float64)
    member_history = (padded * weights[:, None, None]).sum(0) / weights.sum()
    return Reconstruction(
        movies=movies,
        member_movies=member_movies,
        loss_history=member_history.mean(0),
        member_loss_history=member_history,
        config=config,
        mask=alpha,
        trial_ids=np.array([t.trial_id for t in trials]),
        iterations_run=longest,
        stopped_early=bool(stopped_early_all),
        elapsed_s=time.perf_counter() - start_time,
        device=describe(device),
        extra={"members": len(models), "neurons": None if neurons is None else int(len(neurons)),
               "out_of_memory": out_of_memory},
    )


def _optimise_batch(models, batch_trials, config, alpha, neurons, device, generator, steps, label):
    """Optimise the pixels of one batch of trials (a job generator); returns the members'
    loss histories, whether it stopped early, and the members' movies ``(members, B, T, H, W)``."""
    import torch

    from ..device import autocast

    n_members = len(models) if config.ensemble == "average_movies" else 1
    lo, hi = config.pixel_range
    update = torch.from_numpy((alpha >= 0.5).astype(np.float32)).to(device)[None, None]
    responses = np.stack([t.responses for t in batch_trials])
    if neurons is not None and responses.shape[1] != len(neurons):
        responses = responses[:, neurons]
    target = torch.from_numpy(np.ascontiguousarray(responses)).to(device)
    behaviors = [torch.from_numpy(np.stack([behavior_for(m, t) for t in batch_trials])).to(device) for m in models]
    shape = (len(batch_trials), batch_trials[0].n_frames, *alpha.shape)
    pixels = []
    for _ in range(n_members):
        start = torch.full(shape, float(config.start_grey))
        if config.start_noise > 0:
            start = start + config.start_noise * torch.randn(shape, generator=generator)
        pixels.append(start.clamp(lo, hi).to(device).requires_grad_(True))
    if config.optimizer == "adam":
        optimisers = [torch.optim.Adam([p], lr=config.learning_rate) for p in pixels]
    else:
        optimisers = [torch.optim.SGD([p], lr=config.learning_rate, momentum=config.momentum) for p in pixels]
    changing = update[0, 0] > 0
    loss_fn = get_loss(config.loss)
    forwards = [
        _forward_for(model, pixels[m if config.ensemble == "average_movies" else 0], behaviors[m], changing,
                     config.reuse_fixed_parts, device, autocast)
        for m, model in enumerate(models)
    ]
    stopper = _PlateauStopper(config.patience, config.min_improvement, config.min_iterations)
    losses = [[] for _ in range(n_members)]
    stopped_early = False
    for step in range(config.iterations):
        step_losses = []
        if config.ensemble == "average_movies":
            for m, forward in enumerate(forwards):
                loss, grad = _loss_and_gradient(forward, pixels[m], target, neurons, loss_fn, device, autocast)
                pixels[m].grad = normalise_gradient(grad, update, config.gradient_clip)
                losses[m].append(loss)
                step_losses.append(loss)
        else:
            total = torch.zeros_like(pixels[0])
            for forward in forwards:
                loss, grad = _loss_and_gradient(forward, pixels[0], target, neurons, loss_fn, device, autocast)
                total += normalise_gradient(grad, update, config.gradient_clip)
                step_losses.append(loss)
            pixels[0].grad = total / len(models)
            losses[0].append(float(np.mean(step_losses)))
        for optimiser, p in zip(optimisers, pixels):
            optimiser.step()
            with torch.no_grad():
                p.clamp_(lo, hi)
        steps["done"] += 1
        mean_loss = float(np.mean(step_losses))
        last = step == config.iterations - 1
        if config.early_stopping and stopper.should_stop(mean_loss):
            stopped_early, last = True, True
        preview = None
        if last or (config.preview_every and step % config.preview_every == 0):
            with torch.no_grad():
                preview = torch.stack(pixels).mean(0).cpu().numpy()
        yield Progress(stage="reconstruction", step=steps["done"], total=steps["total"],
                       message=f"{label}, step {step + 1}", metrics={"loss": mean_loss}, preview=preview)
        if stopped_early:
            # the remaining budget of this batch is skipped; keep the bar honest
            steps["done"] += config.iterations - step - 1
            break
    with torch.no_grad():
        movies = np.stack([p.detach().cpu().numpy() for p in pixels])
    return losses, stopped_early, movies


# ---------------------------------------------------------------------------- out of memory
def _after_out_of_memory(exc: BaseException, batch_len: int, device):
    """What to retry after ``exc``: ``(trials per batch, device)``, or None when ``exc`` is not an
    out-of-memory error or nothing smaller is left (a single trial on the CPU).

    Halving the batch keeps every finished batch; a single trial that still does not fit moves
    to the CPU, which is slower but has the machine's memory.
    """
    import torch

    from ..device import is_out_of_memory

    if not is_out_of_memory(exc):
        return None
    if batch_len > 1:
        return (batch_len + 1) // 2, device
    if getattr(device, "type", str(device)) != "cpu":
        return 1, torch.device("cpu")
    return None


def _out_of_memory_message(batch_len: int, size: int, device, new_device) -> str:
    if new_device != device:
        return f"out of memory on {device} with one trial: continuing on the CPU (slower; finished trials are kept)"
    return (f"out of memory on {device} with {batch_len} trials per batch: retrying with {size} "
            "(finished batches are kept)")


def _forward_for(model, start, behavior, changing, reuse_fixed_parts: bool, device, autocast):
    """``video -> model(video, behavior)`` for one batch: the model's prepared pass, where it
    offers one, for movies that differ from ``start`` only in the ``changing`` pixels."""
    import torch

    from ..model.protocol import prepared_forward

    if reuse_fixed_parts:
        with torch.no_grad(), autocast(device):
            prepared = prepared_forward(model, start.detach(), behavior, changing)
        if prepared is not None:
            return prepared
    return lambda video: model(video, behavior)


def _loss_and_gradient(forward, pixels, target, neurons, loss_fn, device, autocast):
    import torch

    with autocast(device):
        rates = forward(pixels)
    rates = rates.float()
    if neurons is not None:
        rates = rates[:, torch.as_tensor(neurons, device=rates.device)]
    per_trial = loss_fn(rates, target)
    (grad,) = torch.autograd.grad(per_trial.sum(), pixels)
    return float(per_trial.detach().mean()), grad


def reconstruct_all(models, trials, config: ReconstructionConfig | None = None, **kwargs) -> Reconstruction:
    """Run :func:`reconstruct` to the end without progress reporting."""
    from ..progress import run

    return run(reconstruct(models, trials, config, **kwargs))


def summarise_models(models) -> list[dict[str, Any]]:
    """A JSON-able description of the ensemble for reports."""
    return [
        {"class": type(m).__name__, "n_neurons": int(m.n_neurons), "config": getattr(m, "config", {})}
        for m in as_model_list(models)
    ]

