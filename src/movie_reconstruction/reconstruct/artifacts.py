"""The artifact index: how much of a reconstruction's spatial power is fine grid texture; a leaf module.

Gradient descent on pixels through a strided encoder tends to paint a period-2 checkerboard
that the stimulus does not have (issue 24). Two numbers make it visible, both on the frames
after ``drop_frames``, inside the bounding box of the evaluation mask, with each frame's
mean removed (so the grey level does not count):

- ``high_frequency_share``: the share of spatial power above 0.25 cycles per pixel (radial
  frequency). ``artifact_index`` is the reconstruction's share divided by the stimulus's:
  about 1 when the reconstruction is as fine-grained as the movie, well above 1 for a grid.
- ``nyquist_share``: the share of power in the period-2 rows and columns of the 2D spectrum
  (0.5 cycles per pixel along either axis). A smooth movie has almost none; a checkerboard
  or period-2 stripes have all their power there.

The box is cropped to even sides, so that the period-2 frequency is an exact bin.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from ..errors import InputError

HIGH_FREQUENCY_CUTOFF = 0.25  # cycles per pixel


def _evaluation_box(mask, frame_shape) -> tuple[slice, slice]:
    """Rows and columns of the evaluation mask's bounding box, cropped to even lengths."""
    from .mask import EVALUATION_THRESHOLD, TransparencyMask

    if mask is None:
        evaluation = np.ones(frame_shape, bool)
    else:
        alpha = mask.alpha if isinstance(mask, TransparencyMask) else np.asarray(mask, np.float32)
        if alpha.shape != tuple(frame_shape):
            raise InputError(f"mask has shape {alpha.shape}, the movie's frames are {tuple(frame_shape)}")
        evaluation = alpha >= EVALUATION_THRESHOLD
    if not evaluation.any():
        raise InputError("the evaluation mask (alpha >= 1) is empty")
    rows = np.flatnonzero(evaluation.any(1))
    cols = np.flatnonzero(evaluation.any(0))
    height = (rows[-1] - rows[0] + 1) // 2 * 2
    width = (cols[-1] - cols[0] + 1) // 2 * 2
    if height < 2 or width < 2:
        raise InputError(f"the evaluation mask's bounding box is too small for a spectrum ({height}x{width} px)")
    return slice(rows[0], rows[0] + height), slice(cols[0], cols[0] + width)


def spatial_power(movie, mask=None, *, drop_frames: int = 30) -> np.ndarray:
    """Spatial power spectrum ``(h, w)`` summed over frames (numpy's FFT order), each frame's mean removed."""
    movie = np.asarray(movie, np.float64)
    if movie.ndim != 3:
        raise InputError(f"a movie must be (T, H, W); got {movie.shape}")
    if drop_frames >= movie.shape[0]:
        raise InputError(f"cannot drop {drop_frames} frames of a {movie.shape[0]}-frame movie")
    rows, cols = _evaluation_box(mask, movie.shape[1:])
    box = movie[drop_frames:, rows, cols]
    box = box - box.mean(axis=(1, 2), keepdims=True)
    return (np.abs(np.fft.fft2(box)) ** 2).sum(0)


def power_shares(power: np.ndarray) -> tuple[float, float]:
    """``(share above HIGH_FREQUENCY_CUTOFF, share in the period-2 rows and columns)`` of a spectrum
    in numpy's FFT order with even sides; (0, 0) for a spectrum without power."""
    h, w = power.shape
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.abs(np.fft.fftfreq(w))[None, :]
    total = power.sum()
    if total <= 0:
        return 0.0, 0.0
    high = power[np.hypot(fy, fx) > HIGH_FREQUENCY_CUTOFF].sum()
    nyquist = power[(fy == 0.5) | (fx == 0.5)].sum()
    return float(high / total), float(nyquist / total)


@dataclass(frozen=True)
class ArtifactIndex:
    """Grid texture of a reconstruction, next to its stimulus's (see the module's docstring)."""

    high_frequency_share: float  # reconstruction's power above 0.25 cycles/px, as a share
    stimulus_high_frequency_share: float
    nyquist_share: float  # reconstruction's power in the period-2 rows and columns, as a share
    stimulus_nyquist_share: float

    HEADER: ClassVar[str] = f"{'artifact index':>14} {'Nyquist share (stimulus)':>24}"

    @property
    def artifact_index(self) -> float:
        """The reconstruction's high-frequency share over the stimulus's (NaN for a stimulus without any)."""
        if self.stimulus_high_frequency_share <= 0:
            return float("nan")
        return self.high_frequency_share / self.stimulus_high_frequency_share

    def columns(self) -> str:
        """The two numbers under :attr:`HEADER`, for console tables."""
        nyquist = f"{self.nyquist_share:.3f} ({self.stimulus_nyquist_share:.3f})"
        return f"{self.artifact_index:>14.2f} {nyquist:>24}"

    def to_dict(self) -> dict:
        return {"artifact_index": self.artifact_index, **asdict(self)}


def artifact_index(reconstruction, truth, mask=None, *, drop_frames: int = 30) -> ArtifactIndex:
    """The :class:`ArtifactIndex` of a reconstruction ``(T, H, W)`` against the movie that was shown."""
    reconstruction = np.asarray(reconstruction)
    truth = np.asarray(truth)
    if reconstruction.shape != truth.shape:
        raise InputError(f"movies must have the same shape; got {reconstruction.shape} and {truth.shape}")
    high, nyquist = power_shares(spatial_power(reconstruction, mask, drop_frames=drop_frames))
    truth_high, truth_nyquist = power_shares(spatial_power(truth, mask, drop_frames=drop_frames))
    return ArtifactIndex(high, truth_high, nyquist, truth_nyquist)
