"""How well an encoder predicts responses.

Conventions (those of the Sensorium 2023 competition):

- **single-trial correlation**: per neuron, Pearson correlation between prediction and recorded
  response over all frames of all evaluated trials concatenated; then averaged over neurons.
  Neurons with no variance in either give 0, not NaN.
- **correlation to average**: the same, against the response averaged over repeats of the same
  stimulus (trials whose videos are identical), for stimuli shown at least twice.
- **correlation to rates**: the same, against noise-free rates (only simulated/twin data has them).

Plain NumPy; these functions do not import torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError


def per_neuron_correlation(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], skip_frames: int = 0):
    """Correlation per neuron ``(neurons,)`` over the concatenation of trials ``(neurons, T_i)``.

    ``skip_frames`` drops the first frames of every trial (e.g. the model's burn-in).
    """
    if len(predictions) != len(targets) or not len(predictions):
        raise ValueError(f"need the same, non-zero number of trials, got {len(predictions)} and {len(targets)}")
    pred = np.concatenate([np.asarray(p, dtype=np.float64)[:, skip_frames:] for p in predictions], axis=1)
    targ = np.concatenate([np.asarray(t, dtype=np.float64)[:, skip_frames:] for t in targets], axis=1)
    if pred.shape != targ.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {targ.shape}")
    pred = pred - pred.mean(1, keepdims=True)
    targ = targ - targ.mean(1, keepdims=True)
    denom = np.sqrt((pred**2).sum(1) * (targ**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, (pred * targ).sum(1) / np.where(denom > 0, denom, 1.0), 0.0)
    return corr.astype(np.float32)


def single_trial_correlation(predictions, responses, skip_frames: int = 0) -> float:
    """Sensorium single-trial correlation: mean over neurons of :func:`per_neuron_correlation`."""
    return float(per_neuron_correlation(predictions, responses, skip_frames).mean())


def correlation_to_rates(predictions, rates, skip_frames: int = 0) -> float:
    """Mean per-neuron correlation with the noise-free rates."""
    return float(per_neuron_correlation(predictions, rates, skip_frames).mean())


def repeat_groups(videos: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of trials that showed identical videos, groups of two or more only."""
    groups: dict[str, list[int]] = {}
    for i, video in enumerate(videos):
        key = hashlib.sha1(np.ascontiguousarray(np.asarray(video, dtype=np.float32)).tobytes()).hexdigest()
        groups.setdefault(key, []).append(i)
    return [g for g in groups.values() if len(g) >= 2]


def correlation_to_average(predictions, responses, videos, skip_frames: int = 0) -> float | None:
    """Correlation of predictions with the repeat-averaged responses; None if no stimulus repeats.

    Predictions for repeats differ only through behaviour, so they are averaged too.
    """
    groups = repeat_groups(videos)
    if not groups:
        return None
    mean_pred = [np.mean([predictions[i] for i in g], axis=0) for g in groups]
    mean_resp = [np.mean([responses[i] for i in g], axis=0) for g in groups]
    return single_trial_correlation(mean_pred, mean_resp, skip_frames)


def ground_truth_rates(recording, positions) -> list[np.ndarray] | None:
    """Noise-free rates of the given trials if the recording's folder carries them
    (``ground_truth/rates/{trial_id}.npy``, written by the twin's ``--save-rates``), else None."""
    source = getattr(recording, "source", None)
    if source is None:
        return None
    folder = Path(source) / "ground_truth" / "rates"
    if not folder.is_dir():
        return None
    out = []
    for i in positions:
        path = folder / f"{int(recording.trial_ids[i])}.npy"
        if not path.is_file():
            return None
        rates = np.load(path, mmap_mode="r", allow_pickle=False)
        if recording.neuron_index is not None:
            rates = rates[recording.neuron_index]
        rates = np.asarray(rates, dtype=np.float32)
        if rates.shape[0] != recording.n_neurons:
            raise InputError(f"ground-truth rates have {rates.shape[0]} neurons, recording has {recording.n_neurons}", path)
        out.append(rates)
    return out


def evaluate_encoder(encoder, recording, tier: str = "test", *, skip_frames: int = 0) -> dict:
    """All metrics of ``encoder`` (or a list of encoders, averaged as an ensemble) on one tier.

    Returns ``single_trial``, ``to_average`` (None without repeats), ``to_rates`` and ``ceiling``
    (None without ground-truth rates; ``ceiling`` = noise-free rates vs the same responses,
    computed the same way), ``fraction_of_ceiling``, ``per_neuron`` (array) and ``trials``.
    """
    from .protocol import predict_trial

    encoders = encoder if isinstance(encoder, (list, tuple)) else [encoder]
    positions = recording.indices(tier)
    if positions.size == 0:
        raise InputError(f"the recording has no {tier} trials", recording.source)
    preds, resps, videos = [], [], []
    for i in positions:
        trial = recording.trial(int(i))
        preds.append(np.mean([predict_trial(e, trial.video, trial.behavior) for e in encoders], axis=0))
        resps.append(trial.responses)
        videos.append(trial.video)
    per_neuron = per_neuron_correlation(preds, resps, skip_frames)
    result = {
        "tier": tier,
        "trials": int(positions.size),
        "single_trial": float(per_neuron.mean()),
        "to_average": correlation_to_average(preds, resps, videos, skip_frames),
        "to_rates": None,
        "ceiling": None,
        "fraction_of_ceiling": None,
        "per_neuron": per_neuron,
    }
    rates = ground_truth_rates(recording, positions)
    if rates is not None:
        result["to_rates"] = correlation_to_rates(preds, rates, skip_frames)
        result["ceiling"] = single_trial_correlation(rates, resps, skip_frames)
        if result["ceiling"] > 0:
            result["fraction_of_ceiling"] = result["single_trial"] / result["ceiling"]
    return result
