"""How close is a reconstruction to the movie the mouse saw?

Conventions follow Bauer et al. 2025: the first 30 frames are dropped (the reconstruction
has no evidence about what came before the responses start), only pixels with alpha >= 1
are evaluated, and the headline number is one Pearson correlation over all evaluated
pixels x frames of a movie (``masked_correlation``). A constant movie (for example an
untouched grey start) correlates 0 with anything, not NaN, so controls average cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .artifacts import ArtifactIndex, artifact_index
from .mask import EVALUATION_THRESHOLD, TransparencyMask

DROP_FRAMES = 30


def _alpha(mask, frame_shape) -> np.ndarray:
    if mask is None:
        return np.ones(frame_shape, np.float32)
    if isinstance(mask, TransparencyMask):
        return mask.alpha
    alpha = np.asarray(mask, np.float32)
    if alpha.shape != tuple(frame_shape):
        raise InputError(f"mask has shape {alpha.shape}, the movie's frames are {tuple(frame_shape)}")
    return alpha


def _prepare(reconstruction, truth, mask, drop_frames):
    reconstruction = np.asarray(reconstruction, np.float64)
    truth = np.asarray(truth, np.float64)
    if reconstruction.shape != truth.shape or reconstruction.ndim != 3:
        raise InputError(f"movies must both be (T, H, W); got {reconstruction.shape} and {truth.shape}")
    if drop_frames >= reconstruction.shape[0]:
        raise InputError(f"cannot drop {drop_frames} frames of a {reconstruction.shape[0]}-frame movie")
    evaluation = _alpha(mask, truth.shape[1:]) >= EVALUATION_THRESHOLD
    if not evaluation.any():
        raise InputError("the evaluation mask (alpha >= 1) is empty")
    return reconstruction[drop_frames:], truth[drop_frames:], evaluation


def pearson(a, b) -> float:
    """Pearson correlation of two arrays (flattened); 0 when either is constant."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    if denominator <= 1e-12 * max(a.size, 1):
        return 0.0
    return float((a * b).sum() / denominator)


def masked_correlation(reconstruction, truth, mask=None, *, drop_frames: int = DROP_FRAMES) -> float:
    """Correlation over all pixels (alpha >= 1) x frames (after ``drop_frames``) of one movie."""
    rec, tru, evaluation = _prepare(reconstruction, truth, mask, drop_frames)
    return pearson(rec[:, evaluation], tru[:, evaluation])


def frame_correlation(reconstruction, truth, mask=None, *, drop_frames: int = DROP_FRAMES) -> np.ndarray:
    """Per-frame correlation over the evaluated pixels, ``(T,)``; NaN for the dropped frames."""
    rec, tru, evaluation = _prepare(reconstruction, truth, mask, 0)
    out = np.array([pearson(r[evaluation], t[evaluation]) for r, t in zip(rec, tru)])
    out[:drop_frames] = np.nan
    return out


def pixel_correlation_map(reconstruction, truth, *, drop_frames: int = DROP_FRAMES) -> np.ndarray:
    """Per-pixel correlation over time, ``(H, W)``: where in the frame the reconstruction follows the movie."""
    rec = np.asarray(reconstruction, np.float64)[drop_frames:]
    tru = np.asarray(truth, np.float64)[drop_frames:]
    rec = rec - rec.mean(0)
    tru = tru - tru.mean(0)
    denominator = np.sqrt((rec**2).sum(0) * (tru**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rec * tru).sum(0) / denominator
    return np.where(denominator > 1e-12, out, 0.0).astype(np.float32)


def ssim(reconstruction, truth, mask=None, *, drop_frames: int = DROP_FRAMES, data_range: float = 255.0) -> float:
    """Mean structural similarity (scikit-image) over frames, on the bounding box of the evaluation mask."""
    from skimage.metrics import structural_similarity

    rec, tru, evaluation = _prepare(reconstruction, truth, mask, drop_frames)
    rows = np.flatnonzero(evaluation.any(1))
    cols = np.flatnonzero(evaluation.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    size = min(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    win = min(7, size if size % 2 else size - 1)
    if win < 3:
        raise InputError(f"the evaluation mask's bounding box is too small for SSIM ({size} px)")
    values = [
        structural_similarity(r[box], t[box], data_range=data_range, win_size=win) for r, t in zip(rec, tru)
    ]
    return float(np.mean(values))


@dataclass(frozen=True)
class MovieScores:
    correlation: float
    ssim: float
    frame_correlation: np.ndarray
    pixel_correlation: np.ndarray
    artifacts: ArtifactIndex | None = None  # grid texture next to the stimulus's (issue 24)


def score_movie(reconstruction, truth, mask=None, *, drop_frames: int = DROP_FRAMES) -> MovieScores:
    return MovieScores(
        correlation=masked_correlation(reconstruction, truth, mask, drop_frames=drop_frames),
        ssim=ssim(reconstruction, truth, mask, drop_frames=drop_frames),
        frame_correlation=frame_correlation(reconstruction, truth, mask, drop_frames=drop_frames),
        pixel_correlation=pixel_correlation_map(reconstruction, truth, drop_frames=drop_frames),
        artifacts=artifact_index(reconstruction, truth, mask, drop_frames=drop_frames),
    )


def score_reconstruction(reconstruction, trials, *, drop_frames: int = DROP_FRAMES) -> list[MovieScores]:
    """Scores of each trial of a :class:`~.result.Reconstruction` against the trials' videos."""
    from .inputs import as_trial_list

    trials = as_trial_list(trials)
    if len(trials) != reconstruction.movies.shape[0]:
        raise ValueError(f"{len(trials)} trials for a reconstruction of {reconstruction.movies.shape[0]}")
    return [
        score_movie(movie, trial.video, reconstruction.mask, drop_frames=drop_frames)
        for movie, trial in zip(reconstruction.movies, trials)
    ]


# ---------------------------------------------------------------------------- response level
@dataclass(frozen=True)
class ResponseCheck:
    """How well the encoders' predictions match the recorded responses, from the reconstructed
    movie and from the true movie. ``ratio`` near 1: the reconstruction explains the responses
    as well as the true movie does; above 1 can mean over-fitting the noise. Correlations follow
    the Sensorium convention of :func:`movie_reconstruction.model.metrics.single_trial_correlation`
    (a silent neuron counts as 0)."""

    reconstructed: float  # mean over neurons of r(predicted from reconstruction, recorded)
    true_movie: float  # mean over neurons of r(predicted from true movie, recorded)
    reconstructed_nll: float
    true_movie_nll: float

    @property
    def ratio(self) -> float:
        return self.reconstructed / self.true_movie if self.true_movie else float("nan")


def predict(models, video, trial, *, device=None) -> np.ndarray:
    """Ensemble-mean predicted responses ``(neurons, T)`` to ``video`` with the trial's behaviour."""
    import torch

    from ..device import pick_device
    from .inputs import as_model_list, behavior_for

    models = as_model_list(models)
    device = pick_device(device)
    out = []
    with torch.no_grad():
        for model in models:
            was_training = model.training
            original = next(model.parameters(), torch.empty(0)).device
            model.eval()
            model.to(device)
            try:
                x = torch.from_numpy(np.ascontiguousarray(video, np.float32))[None].to(device)
                b = torch.from_numpy(behavior_for(model, trial))[None].to(device)
                out.append(model(x, b)[0].float().cpu().numpy())
            finally:
                model.train(was_training)
                model.to(original)
    return np.mean(out, axis=0)


def _nll(predicted, recorded, eps=1e-6) -> float:
    return float((predicted - recorded * np.log(predicted + eps)).mean())


def response_check(models, reconstructed_movie, trial, *, drop_frames: int = DROP_FRAMES, device=None) -> ResponseCheck:
    from ..model.metrics import single_trial_correlation

    recorded = np.asarray(trial.responses, np.float64)[:, drop_frames:]
    from_rec = predict(models, reconstructed_movie, trial, device=device)[:, drop_frames:].astype(np.float64)
    from_true = predict(models, trial.video, trial, device=device)[:, drop_frames:].astype(np.float64)
    return ResponseCheck(
        reconstructed=single_trial_correlation([from_rec], [recorded]),
        true_movie=single_trial_correlation([from_true], [recorded]),
        reconstructed_nll=_nll(from_rec, recorded),
        true_movie_nll=_nll(from_true, recorded),
    )
