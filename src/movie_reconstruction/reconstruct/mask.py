"""Transparency masks: which pixels the encoder's neurons actually see.

A mask is an alpha map ``(H, W)``. Reconstruction updates pixels where alpha >= 0.5 and
evaluation uses pixels where alpha >= 1 (the paper's convention). Two ways to get one:

``learn_mask`` (the paper's method, as we read it)
    A free opacity per pixel starts at 1. Each step blends a training trial's video with
    another trial's video, ``opacity * own + (1 - opacity) * other``, and asks the encoder to
    predict the first trial's *recorded* responses from the blend (Poisson NLL). A penalty
    ``sparsity * mean(opacity)`` pulls the opacity down everywhere; where the neurons care
    about the pixels, the response loss pushes back. Opacities stay in 0..1; the last quarter
    of the steps is averaged and smoothed with a 1-pixel Gaussian to remove the noise of the
    random blends. Pixels the encoder keeps at least half opaque are the evaluation region:
    ``alpha = opacity / 0.5``, so alpha >= 1 means opacity >= 0.5 and alpha >= 0.5 (updated)
    means opacity >= 0.25. (A penalised opacity settles below 1 even where the neurons look,
    so the paper's thresholds are applied to this rescaled alpha.)

``mask_from_readout`` (cheap, documented estimate)
    Sum a Gaussian of ``sigma_px`` pixels at each neuron's readout position (the encoder's
    ``readout_positions()``, receptive-field centres in normalised (x, y) coordinates) and scale
    the coverage map so that the ``eval_fraction`` best-covered pixels reach alpha >= 1. Pixels
    with at least half that coverage are updated. No training trials needed; it ignores how
    large the receptive fields are beyond ``sigma_px``.

Masks are saved with the model as safetensors (``alpha``) with the method and its settings
in the metadata (:func:`save_mask`, :func:`load_mask`, :func:`mask_path_for`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Job, Progress
from .inputs import as_trial_list, behavior_for, models_prepared
from ..losses import poisson_nll

UPDATE_THRESHOLD = 0.5
EVALUATION_THRESHOLD = 1.0
MASK_FILE = "transparency_mask.safetensors"


@dataclass(frozen=True)
class TransparencyMask:
    alpha: np.ndarray  # (H, W) float32, >= 0
    method: str = "manual"
    settings: dict = field(default_factory=dict)

    def __post_init__(self):
        alpha = np.asarray(self.alpha, dtype=np.float32)
        if alpha.ndim != 2:
            raise InputError(f"a transparency mask must be (height, width), got shape {alpha.shape}")
        if not np.isfinite(alpha).all() or (alpha < 0).any():
            raise InputError("a transparency mask must be finite and non-negative")
        object.__setattr__(self, "alpha", alpha)

    @property
    def update(self) -> np.ndarray:
        return self.alpha >= UPDATE_THRESHOLD

    @property
    def evaluation(self) -> np.ndarray:
        return self.alpha >= EVALUATION_THRESHOLD

    @classmethod
    def full(cls, frame_shape) -> TransparencyMask:
        return cls(np.ones(frame_shape, np.float32), method="full")


# ---------------------------------------------------------------------------- save / load
def mask_path_for(checkpoint: str | Path) -> Path:
    """Where a model checkpoint's mask lives: inside a checkpoint folder, or beside a checkpoint file."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir() or not checkpoint.suffix:
        return checkpoint / MASK_FILE
    return checkpoint.with_name(checkpoint.stem + "." + MASK_FILE)


def save_mask(mask: TransparencyMask, path: str | Path) -> Path:
    """Write the mask as safetensors (atomically); a checkpoint path or folder puts it beside the model."""
    from safetensors.numpy import save

    from .._atomic import write_bytes

    path = Path(path)
    if path.suffix != ".safetensors":
        path = mask_path_for(path)
    metadata = {"method": mask.method, "settings": json.dumps(mask.settings, default=float)}
    write_bytes(path, save({"alpha": np.ascontiguousarray(mask.alpha)}, metadata=metadata))
    return path


def load_mask(path: str | Path) -> TransparencyMask:
    """Read a mask written by :func:`save_mask` (a mask file, or a checkpoint path/folder)."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix != ".safetensors" or path.is_dir():
        path = mask_path_for(path)
    if not path.exists():
        raise InputError("no transparency mask found (learn or estimate one and save it with the model)", path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            alpha = fh.get_tensor("alpha")
            metadata = fh.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise InputError(f"not a readable mask file ({exc})", path) from None
    return TransparencyMask(alpha, metadata.get("method", "unknown"), json.loads(metadata.get("settings", "{}")))


def resolve_mask(mask, models, frame_shape) -> np.ndarray:
    """An alpha map ``(H, W)``: the given one, the models' own (averaged), or all ones."""
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


# ---------------------------------------------------------------------------- cheap estimate
def mask_from_readout(
    positions, frame_shape, *, sigma_px: float = 4.0, eval_fraction: float = 0.1
) -> TransparencyMask:
    """Estimate a mask from readout positions ``(neurons, 2)`` in normalised (x, y) in [-1, 1].

    Uses the ``align_corners=True`` convention (-1 and 1 are the centres of the edge pixels).
    """
    if hasattr(positions, "detach"):
        positions = positions.detach().cpu().numpy()
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or len(positions) == 0:
        raise InputError(f"readout positions must be (neurons, 2), got {positions.shape}")
    if not 0 < eval_fraction <= 1:
        raise ValueError(f"eval_fraction must be in (0, 1], got {eval_fraction}")
    h, w = frame_shape
    x = (np.clip(positions[:, 0], -1, 1) + 1) / 2 * (w - 1)
    y = (np.clip(positions[:, 1], -1, 1) + 1) / 2 * (h - 1)
    # separable: coverage = sum_n g(rows - y_n) g(cols - x_n)
    gy = np.exp(-0.5 * ((np.arange(h)[None, :] - y[:, None]) / sigma_px) ** 2)
    gx = np.exp(-0.5 * ((np.arange(w)[None, :] - x[:, None]) / sigma_px) ** 2)
    coverage = gy.T @ gx
    level = np.quantile(coverage, 1 - eval_fraction)
    alpha = coverage / max(level, 1e-12)
    return TransparencyMask(
        alpha.astype(np.float32),
        method="readout",
        settings={"sigma_px": sigma_px, "eval_fraction": eval_fraction, "neurons": int(len(positions))},
    )


def mask_for_model(model, **kwargs) -> TransparencyMask:
    """The cheap estimate for an encoder meeting the contract (uses ``readout_positions()``)."""
    positions = model.readout_positions()
    if hasattr(positions, "detach"):
        positions = positions.detach().cpu().numpy()
    return mask_from_readout(positions, tuple(model.frame_shape), **kwargs)


# ---------------------------------------------------------------------------- learned
@dataclass(frozen=True)
class MaskConfig:
    steps: int = 200
    learning_rate: float = 0.05
    sparsity: float = 1.0  # weight of mean(opacity), in units of the NLL cost of swapping a whole video
    smooth_px: float = 1.0
    batch_trials: int = 4
    frames: int | None = 90  # random clip length per step (None = whole trials)
    seed: int = 0


def learn_mask(model, trials, config: MaskConfig | None = None, *, device=None) -> Job[TransparencyMask]:
    """Learn a transparency mask for one encoder from training trials (a job generator).

    The sparsity penalty is scaled by how much the encoder's likelihood drops when a whole
    trial's video is swapped for another's (measured once at the start), so the same
    ``sparsity`` means the same thing for any population size or response scale.
    """
    import torch

    from ..device import pick_device

    config = config or MaskConfig()
    trials = as_trial_list(trials)
    if len(trials) < 2:
        raise InputError("learning a transparency mask needs at least two trials (their videos are blended)")
    device = pick_device(device)
    frame_shape = tuple(model.frame_shape)
    rng = np.random.default_rng(config.seed)
    with models_prepared([model], device):
        opacity = torch.ones(frame_shape, device=device, requires_grad=True)
        optimiser = torch.optim.Adam([opacity], lr=config.learning_rate)
        averaged = torch.zeros(frame_shape, device=device)
        average_from = config.steps - max(1, config.steps // 4)

        def sample():
            pick = rng.choice(len(trials), size=min(config.batch_trials, len(trials)), replace=False)
            others = [(int(i) + int(rng.integers(1, len(trials)))) % len(trials) for i in pick]
            length = min(min(trials[i].n_frames for i in pick), min(trials[j].n_frames for j in others))
            frames = length if config.frames is None else min(config.frames, length)
            start = int(rng.integers(0, length - frames + 1))
            window = slice(start, start + frames)
            own = np.stack([trials[i].video[window] for i in pick])
            other = np.stack([trials[j].video[window] for j in others])
            resp = np.stack([trials[i].responses[:, window] for i in pick])
            beh = np.stack([behavior_for(model, trials[i])[:, window] for i in pick])
            as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)  # noqa: E731
            return as_t(own), as_t(other), as_t(resp), as_t(beh)

        with torch.no_grad():
            own, other, resp, beh = sample()
            gap = float((poisson_nll(model(other, beh), resp) - poisson_nll(model(own, beh), resp)).mean())
        gap = max(gap, 1e-6)
        for step in range(config.steps):
            own, other, resp, beh = sample()
            blend = opacity * own + (1 - opacity) * other
            loss_resp = poisson_nll(model(blend, beh), resp).mean()
            loss = loss_resp + config.sparsity * gap * opacity.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                opacity.clamp_(0, 1)
                if step >= average_from:
                    averaged += opacity / (config.steps - average_from)
            yield Progress(
                stage="transparency mask",
                step=step + 1,
                total=config.steps,
                metrics={"response_loss": float(loss_resp.detach()), "mean_opacity": float(opacity.detach().mean())},
                preview=opacity.detach().cpu().numpy() if step % 20 == 0 or step == config.steps - 1 else None,
            )
    from scipy.ndimage import gaussian_filter

    result = averaged.cpu().numpy()
    if config.smooth_px:
        result = gaussian_filter(result, config.smooth_px, mode="nearest")
    settings = {k: v for k, v in config.__dict__.items()}
    settings["nll_gap"] = gap
    return TransparencyMask((result / 0.5).astype(np.float32), method="learned", settings=settings)
