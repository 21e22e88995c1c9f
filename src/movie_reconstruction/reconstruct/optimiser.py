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
benchmark baseline in ``benchmarks/windowed_baseline.py``.

Ensembles: by default every member reconstructs its own movie and the movies are averaged
(the paper's way); ``ensemble="average_gradients"`` instead optimises one shared movie with
the members' averaged (normalised) gradients. The optional 3D Gaussian blur (sigma 0.5 in
frames and pixels, as in the paper) is applied to the averaged movie at the end.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..errors import InputError
from ..losses import get_loss, poisson_nll  # noqa: F401 - poisson_nll: imported from here by callers
from ..progress import Job, Progress
from .antialias import blur_gradient, grow, jittered, random_shift
from .config import ReconstructionConfig
from .ensemble import combine_member_movies
from .inputs import as_model_list, as_trial_list, behavior_for, check_trials, models_prepared
from .mask import resolve_mask
from .result import Reconstruction

_log = logging.getLogger("movie_reconstruction.reconstruct")


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


# long: the batch queue with its out-of-memory retry (halve the batch, then move to the CPU) and the
# result's assembly; one batch's loop is _optimise_batch.
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
                    f"batch {len(finished) + 1}/{len(finished) + len(queue) + 1}", positions=list(batch))
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

    movies = combine_member_movies(member_movies, config.blur_sigma, config.pixel_range)
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


def _optimise_batch(models, batch_trials, config, alpha, neurons, device, generator, steps, label, positions=()):
    """Optimise the pixels of one batch of trials (a job generator); returns the members'
    loss histories, whether it stopped early, and the members' movies ``(members, B, T, H, W)``.
    ``positions``: the batch's trials as indices into the trials being reconstructed (in the
    events' context, for front ends that show the previews)."""
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
    changing = grow(update[0, 0] > 0, config.jitter)  # a jittered update reaches this far
    starts = [p.detach().clone() for p in pixels]
    loss_fn = get_loss(config.loss)
    forwards = [
        _forward_for(model, pixels[m if config.ensemble == "average_movies" else 0], behaviors[m], changing,
                     config.reuse_fixed_parts, device, autocast)
        for m, model in enumerate(models)
    ]
    loss_args = (target, neurons, loss_fn, device, autocast)
    stopper = _PlateauStopper(config.patience, config.min_improvement, config.min_iterations)
    losses = [[] for _ in range(n_members)]
    stopped_early = False
    for step in range(config.iterations):
        step_losses = []
        if config.ensemble == "average_movies":
            for m, forward in enumerate(forwards):
                loss, pixels[m].grad = _step_gradient(forward, pixels[m], starts[m], update, config, generator, loss_args)
                losses[m].append(loss)
                step_losses.append(loss)
        else:
            total = torch.zeros_like(pixels[0])
            for forward in forwards:
                loss, grad = _step_gradient(forward, pixels[0], starts[0], update, config, generator, loss_args)
                total += grad
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
                       message=f"{label}, step {step + 1}", metrics={"loss": mean_loss}, preview=preview,
                       context={"positions": list(positions)})
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


def _step_gradient(forward, pixels, start, update, config, generator, loss_args):
    """One member's loss and normalised pixel gradient for one step, with the anti-aliasing the
    config asks for (:mod:`.antialias`): the update jittered, the gradient blurred."""
    forward = jittered(forward, start, *random_shift(config.jitter, generator))
    loss, grad = _loss_and_gradient(forward, pixels, *loss_args)
    if config.gradient_blur:
        # blur only the update's own gradient: a prepared pass's gradient outside it is not computed in full
        grad = blur_gradient(grad * update, config.gradient_blur)
    return loss, normalise_gradient(grad, update, config.gradient_clip)


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
