"""The paper's windowed reconstruction loop, re-implemented as a benchmark baseline only.

Bauer et al. 2025 cut each 10 s clip into 32-frame windows with stride 8 (a last window is
aligned to the end, giving 35 windows for 300 frames), compute each window's gradient of the
Poisson NLL, L2-normalise it per window, average the windows' gradients frame by frame,
multiply by the update mask, clip to +-1 and step with momentum (learning rate 1000 on the
0..255 grey scale), clipping pixels to 0..255. Each ensemble member reconstructs its own
movie; the movies are averaged and optionally blurred.

Use :func:`movie_reconstruction.reconstruct.reconstruct` for real work: it needs one pass
over each frame per step instead of four, and no per-window restarts of the causal encoder.
This loop lives with the benchmarks (``reconstruct_speed.py`` compares it with ours) and
reads its inputs, its loss and its ensemble average through the package's leaf modules, so
both loops check their inputs and combine their members' movies the same way. A saved
result loads with ``Reconstruction.load(folder, config_type=WindowedConfig)``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from movie_reconstruction.progress import Job, Progress
from movie_reconstruction.reconstruct.ensemble import combine_member_movies
from movie_reconstruction.reconstruct.inputs import (
    as_model_list,
    as_trial_list,
    behavior_for,
    check_trials,
    models_prepared,
)
from movie_reconstruction.losses import poisson_nll
from movie_reconstruction.reconstruct.mask import resolve_mask
from movie_reconstruction.reconstruct.result import Reconstruction


@dataclass(frozen=True)
class WindowedConfig:
    iterations: int = 1000
    window: int = 32
    stride: int = 8
    learning_rate: float = 1000.0
    momentum: float = 0.9
    gradient_clip: float = 1.0
    blur_sigma: float | None = 0.5
    start_grey: float = 128.0
    pixel_range: tuple[float, float] = (0.0, 255.0)
    window_batch: int = 64  # windows per forward pass (memory only; results do not depend on it)
    preview_every: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


def window_starts(n_frames: int, window: int, stride: int) -> np.ndarray:
    if n_frames <= window:
        return np.array([0])
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return np.array(starts)


def reconstruct_windowed(models, trials, config: WindowedConfig | None = None, *, mask=None, device=None) -> Job[Reconstruction]:
    import torch

    from movie_reconstruction.device import describe, pick_device

    config = config or WindowedConfig()
    models = as_model_list(models)
    trials = as_trial_list(trials)
    check_trials(models, trials, None)
    frame_shape = tuple(models[0].frame_shape)
    alpha = resolve_mask(mask, models, frame_shape)
    device = pick_device(device)
    n_frames = trials[0].n_frames
    if any(t.n_frames != n_frames for t in trials):
        raise ValueError("all trials must have the same length")
    window = min(config.window, n_frames)
    starts = window_starts(n_frames, window, config.stride)
    frame_index = torch.from_numpy(starts[:, None] + np.arange(window)[None]).to(device)  # (windows, window)
    coverage = torch.zeros(n_frames, device=device).index_add_(
        0, frame_index.reshape(-1), torch.ones(frame_index.numel(), device=device)
    )
    update = torch.from_numpy((alpha >= 0.5).astype(np.float32)).to(device)
    lo, hi = config.pixel_range
    b = len(trials)
    n_windows = len(starts)
    target = torch.from_numpy(np.stack([t.responses for t in trials])).to(device)  # (B, N, T)
    target_windows = target[:, :, frame_index].permute(0, 2, 1, 3).reshape(b * n_windows, -1, window)
    start_time = time.perf_counter()
    member_movies, member_losses = [], []
    with models_prepared(models, device):
        for m_index, model in enumerate(models):
            beh = torch.from_numpy(np.stack([behavior_for(model, t) for t in trials])).to(device)  # (B, C, T)
            beh_windows = beh[:, :, frame_index].permute(0, 2, 1, 3).reshape(b * n_windows, -1, window)
            pixels = torch.full((b, n_frames, *frame_shape), float(config.start_grey), device=device)
            pixels.requires_grad_(True)
            optimiser = torch.optim.SGD([pixels], lr=config.learning_rate, momentum=config.momentum)
            losses = []
            for step in range(config.iterations):
                clips = pixels.detach()[:, frame_index].reshape(b * n_windows, window, *frame_shape)
                grads, loss_sum = [], 0.0
                for s in range(0, clips.shape[0], config.window_batch):
                    chunk = clips[s : s + config.window_batch].clone().requires_grad_(True)
                    rates = model(chunk, beh_windows[s : s + config.window_batch]).float()
                    per_window = poisson_nll(rates, target_windows[s : s + config.window_batch])
                    (g,) = torch.autograd.grad(per_window.sum(), chunk)
                    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)
                    grads.append(g / norm[:, None, None, None])
                    loss_sum += float(per_window.detach().sum())
                g = torch.cat(grads).reshape(b, n_windows * window, *frame_shape)
                total = torch.zeros_like(pixels).index_add_(1, frame_index.reshape(-1), g)
                total = total / coverage[None, :, None, None] * update
                pixels.grad = total.clamp(-config.gradient_clip, config.gradient_clip)
                optimiser.step()
                with torch.no_grad():
                    pixels.clamp_(lo, hi)
                losses.append(loss_sum / clips.shape[0])
                preview = None
                if config.preview_every and step % config.preview_every == 0:
                    preview = pixels.detach().cpu().numpy()
                yield Progress(
                    stage="windowed reconstruction",
                    step=m_index * config.iterations + step + 1,
                    total=len(models) * config.iterations,
                    metrics={"loss": losses[-1]},
                    preview=preview,
                )
            member_movies.append(pixels.detach().cpu().numpy())
            member_losses.append(losses)
    member_movies = np.stack(member_movies).astype(np.float32)
    movies = combine_member_movies(member_movies, config.blur_sigma, config.pixel_range)
    history = np.array(member_losses)
    return Reconstruction(
        movies=movies,
        member_movies=member_movies,
        loss_history=history.mean(0),
        member_loss_history=history,
        config=config,
        mask=alpha,
        trial_ids=np.array([t.trial_id for t in trials]),
        iterations_run=config.iterations,
        stopped_early=False,
        elapsed_s=time.perf_counter() - start_time,
        device=describe(device),
        extra={"windows": int(n_windows), "members": len(models), "method": "windowed (Bauer et al. 2025)"},
    )
