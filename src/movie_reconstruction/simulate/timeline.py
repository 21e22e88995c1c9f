"""A session's timeline: the trials laid end to end with grey between them, when each movie frame
was shown and when each imaging frame was taken, and per-trial rates placed on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .config import SimulationConfig
from .stimulus import GREY, StimulusTrial, presentation_times


@dataclass
class Timeline:
    movie: np.ndarray  # (T, H, W)
    trial_starts: np.ndarray
    trial_lengths: np.ndarray
    tiers: list[str]
    sources: list[str]
    frame_times: np.ndarray  # (T,)
    frame_ends: np.ndarray  # (T,)
    imaging_times: np.ndarray


def make_timeline(config: SimulationConfig, trials: Sequence[StimulusTrial], rng: np.random.Generator) -> Timeline:
    stim = config.stimulus
    height, width = trials[0].video.shape[1:]
    grey_frames = int(round(stim.grey_seconds * stim.frame_rate))
    lead_frames = int(round(stim.lead_in_seconds * stim.frame_rate))
    pieces, starts, lengths = [np.full((lead_frames, height, width), GREY, np.float32)], [], []
    position = lead_frames
    for k, trial in enumerate(trials):
        if k:
            pieces.append(np.full((grey_frames, height, width), GREY, np.float32))
            position += grey_frames
        starts.append(position)
        lengths.append(trial.video.shape[0])
        pieces.append(np.asarray(trial.video, np.float32))
        position += trial.video.shape[0]
    pieces.append(np.full((max(lead_frames, 1), height, width), GREY, np.float32))
    movie = np.concatenate(pieces)

    imaging = config.imaging
    period = 1.0 / imaging.frame_rate
    first_frame = imaging.imaging_start_s + 0.5 + rng.uniform(0.0, period)
    frame_times = presentation_times(movie.shape[0], first_frame, stim, rng)
    last_end = frame_times[-1] + 1.0 / stim.frame_rate
    frame_ends = np.append(frame_times[1:], last_end)
    n_imaging = int(np.ceil((last_end + 0.5 - imaging.imaging_start_s) / period))
    imaging_times = imaging.imaging_start_s + period * np.arange(n_imaging)
    return Timeline(
        movie=movie,
        trial_starts=np.asarray(starts),
        trial_lengths=np.asarray(lengths),
        tiers=[t.tier for t in trials],
        sources=[t.source for t in trials],
        frame_times=frame_times,
        frame_ends=frame_ends,
        imaging_times=imaging_times,
    )


def check_rates(rates, n_frames: int, what: str) -> np.ndarray:
    rates = np.asarray(rates, dtype=np.float32)
    if rates.ndim != 2 or rates.shape[1] != n_frames:
        raise InputError(f"{what} returned rates of shape {rates.shape}; expected (neurons, {n_frames})")
    if not np.isfinite(rates).all():
        raise InputError(f"{what} returned NaN or inf rates")
    if (rates < 0).any():
        raise InputError(f"{what} returned negative rates (min {float(rates.min()):.3g})")
    return rates


def place_trial_rates(trial_rates: Sequence[np.ndarray], timeline: Timeline) -> np.ndarray:
    if len(trial_rates) != len(timeline.trial_starts):
        raise InputError(f"{len(trial_rates)} rate arrays for {len(timeline.trial_starts)} trials")
    checked = [
        check_rates(r, int(n), f"trial {k}'s rates") for k, (r, n) in enumerate(zip(trial_rates, timeline.trial_lengths))
    ]
    counts = {r.shape[0] for r in checked}
    if len(counts) != 1:
        raise InputError(f"trials have different neuron counts: {sorted(counts)}")
    grey = np.percentile(np.concatenate(checked, axis=1), 10, axis=1)
    rates = np.repeat(grey[:, None], timeline.movie.shape[0], axis=1).astype(np.float32)
    for start, block in zip(timeline.trial_starts, checked):
        rates[:, start : start + block.shape[1]] = block
    return rates
