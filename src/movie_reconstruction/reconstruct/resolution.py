"""Temporal and spatial resolution of reconstructions, and where in the frame they can be trusted.

``temporal_resolution``: the magnitude-squared coherence between reconstruction and stimulus
as a function of temporal frequency, pooled over the evaluated pixels and the trials (Welch
cross-spectra of ``SEGMENT_SECONDS`` windows, each pixel's mean removed, summed before taking
the magnitude). A coherence C at frequency f is a correlation of sqrt(C) between the two
movies' components at f. The one number is the highest frequency up to which the coherence
stays at or above ``COHERENCE_LEVEL`` (0.1, a component correlation of about 0.32).

``spatial_resolution``: the same for spatial frequency, from 2-D Fourier transforms of every
evaluated frame on the evaluation mask's bounding box (each frame's mean inside the mask
removed, pixels outside the mask set to zero), pooled over frames and trials in rings of
radial frequency. In cycles per degree when ``degrees_per_pixel`` is known, else cycles per
pixel (the unit is part of the result).

``reliability_map``: the per-pixel correlation over time, averaged over trials.

The first ``drop_frames`` frames are dropped, as everywhere in :mod:`.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mask import EVALUATION_THRESHOLD
from .metrics import DROP_FRAMES, _alpha, pixel_correlation_map

COHERENCE_LEVEL = 0.1
SEGMENT_SECONDS = 2.0


@dataclass(frozen=True)
class Spectrum:
    """Coherence per frequency, and the highest frequency up to which it stays >= ``level``."""

    frequencies: tuple[float, ...]
    coherence: tuple[float, ...]
    unit: str  # "Hz", "cycles/degree" or "cycles/pixel"
    level: float
    limit: float | None  # None: below the level already at the lowest frequency

    def to_dict(self) -> dict:
        return {"frequencies": list(self.frequencies), "coherence": list(self.coherence), "unit": self.unit,
                "level": self.level, "limit": self.limit}

    def describe(self) -> str:
        if self.limit is None:
            return f"coherence below {self.level:g} at every frequency ({self.unit})"
        return f"coherence >= {self.level:g} up to {self.limit:.3g} {self.unit}"


def highest_frequency_above(frequencies, coherence, level: float = COHERENCE_LEVEL) -> float | None:
    """The highest frequency f such that coherence >= level at every frequency from the lowest up to f."""
    below = np.flatnonzero(~(np.asarray(coherence) >= level))
    if len(below) and below[0] == 0:
        return None
    last = (below[0] - 1) if len(below) else len(frequencies) - 1
    return float(frequencies[last])


def _pooled_coherence(cross: np.ndarray, power_a: np.ndarray, power_b: np.ndarray) -> np.ndarray:
    denominator = power_a * power_b
    return np.where(denominator > 0, np.abs(cross) ** 2 / np.where(denominator > 0, denominator, 1.0), 0.0)


def temporal_resolution(reconstructions, stimuli, mask=None, *, frame_rate: float, drop_frames: int = DROP_FRAMES,
                        level: float = COHERENCE_LEVEL) -> Spectrum:
    from scipy.signal import csd, welch

    cross = power_r = power_s = 0.0
    frequencies = np.zeros(0)
    for rec, stim in zip(reconstructions, stimuli):
        inside = _alpha(mask, np.shape(stim)[1:]) >= EVALUATION_THRESHOLD
        r = np.asarray(rec, np.float64)[drop_frames:, inside].T  # (pixels, T)
        s = np.asarray(stim, np.float64)[drop_frames:, inside].T
        window = min(r.shape[1], max(4, int(round(SEGMENT_SECONDS * frame_rate))))
        frequencies, c = csd(r, s, fs=frame_rate, nperseg=window, axis=-1)
        cross = cross + c.sum(0)
        power_r = power_r + welch(r, fs=frame_rate, nperseg=window, axis=-1)[1].sum(0)
        power_s = power_s + welch(s, fs=frame_rate, nperseg=window, axis=-1)[1].sum(0)
    coherence = _pooled_coherence(cross, power_r, power_s)[1:]  # 0 Hz is the static part, scored apart
    frequencies = frequencies[1:]
    return Spectrum(tuple(map(float, frequencies)), tuple(map(float, coherence)), "Hz", level,
                    highest_frequency_above(frequencies, coherence, level))


def spatial_resolution(reconstructions, stimuli, mask=None, *, drop_frames: int = DROP_FRAMES,
                       degrees_per_pixel: float | None = None, level: float = COHERENCE_LEVEL) -> Spectrum:
    shape = np.shape(stimuli[0])[1:]
    inside = _alpha(mask, shape) >= EVALUATION_THRESHOLD
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    window = inside[box]
    fy = np.fft.fftfreq(window.shape[0])[:, None]
    fx = np.fft.rfftfreq(window.shape[1])[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    step = 1.0 / max(window.shape)
    ring = np.round(radius / step).astype(int)  # ring k holds frequencies near k * step cycles/pixel
    n_rings = int(0.5 / step) + 1
    cross = np.zeros(n_rings, complex)
    power_r, power_s = np.zeros(n_rings), np.zeros(n_rings)

    def spectra(movie):
        frames = np.asarray(movie, np.float64)[drop_frames:][(slice(None), *box)]
        frames = frames - frames[:, window].mean(1)[:, None, None]
        return np.fft.rfft2(frames * window)

    for rec, stim in zip(reconstructions, stimuli):
        a, b = spectra(rec), spectra(stim)
        keep = ring < n_rings
        cross += np.bincount(ring[keep], (a * b.conj()).sum(0)[keep].real, n_rings) \
            + 1j * np.bincount(ring[keep], (a * b.conj()).sum(0)[keep].imag, n_rings)
        power_r += np.bincount(ring[keep], (np.abs(a) ** 2).sum(0)[keep], n_rings)
        power_s += np.bincount(ring[keep], (np.abs(b) ** 2).sum(0)[keep], n_rings)
    coherence = _pooled_coherence(cross, power_r, power_s)[1:]  # ring 0 is the frame mean, removed
    frequencies = np.arange(1, n_rings) * step
    unit = "cycles/pixel"
    if degrees_per_pixel:
        frequencies, unit = frequencies / degrees_per_pixel, "cycles/degree"
    return Spectrum(tuple(map(float, frequencies)), tuple(map(float, coherence)), unit, level,
                    highest_frequency_above(frequencies, coherence, level))


def reliability_map(reconstructions, stimuli, *, drop_frames: int = DROP_FRAMES) -> np.ndarray:
    """Per-pixel correlation over time ``(H, W)``, averaged over trials: where the reconstruction follows the movie."""
    maps = [pixel_correlation_map(r, s, drop_frames=drop_frames) for r, s in zip(reconstructions, stimuli)]
    return np.mean(maps, axis=0).astype(np.float32)
