"""A V1-like population: what each simulated neuron fires in response to the movie.

Each cell has a Gabor receptive field (simple cells: one linear filter; complex cells: the
energy of a quadrature pair) placed retinotopically, a biphasic temporal filter after a
latency, a threshold-power output nonlinearity, a gain that rises with running speed, and a
receptive field that moves with the eye. The output is a firing rate (spikes/s) per movie
frame; Poisson spikes are drawn from it elsewhere (:mod:`.imaging`).

Any callable ``rates_fn(movie, behaviour) -> rates`` can stand in for this population:
``movie`` is ``(T, H, W)`` float32 grey levels (0..255) as shown, ``behaviour`` a dict of
``(T,)`` arrays (``running`` cm/s, ``pupil``, ``pupil_x``, ``pupil_y`` degrees) sampled at
the movie frames, and the result ``(neurons, T)`` non-negative spikes/s.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..errors import InputError
from .config import PopulationConfig
from .stimulus import GREY


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    low, high = bounds
    return np.exp(rng.uniform(np.log(low), np.log(high), n))


def _gamma_bump(t: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """A smooth bump that is 0 for t <= 0 and peaks (at 1) at t = peak."""
    x = np.clip(t / peak, 0.0, None)
    return x**3 * np.exp(3.0 * (1.0 - x))


@dataclass
class V1Population:
    frame_shape: tuple[int, int]
    frame_rate: float
    rf_x: np.ndarray  # (N,) pixels, receptive-field centre on the screen
    rf_y: np.ndarray
    sigma: np.ndarray  # (N,) pixels, envelope s.d. along the bars
    aspect: np.ndarray  # (N,) envelope width / length
    spatial_frequency: np.ndarray  # (N,) cycles/pixel
    orientation: np.ndarray  # (N,) radians
    phase: np.ndarray  # (N,) radians
    is_complex: np.ndarray  # (N,) bool
    latency_s: np.ndarray
    temporal_peak_s: np.ndarray
    undershoot: np.ndarray
    running_gain: np.ndarray  # (N,) extra gain at full running
    mean_rate_hz: np.ndarray  # (N,) target mean rate during stimuli at rest
    spontaneous_rate_hz: float = 0.3
    max_rate_hz: float = 80.0
    threshold_sd: float = 0.3
    exponent: float = 2.0
    running_half_speed_cm_s: float = 10.0
    degrees_per_pixel: float = 1.8
    eye_shift: bool = True
    drive_mean: np.ndarray | None = None  # set by calibrate()
    drive_sd: np.ndarray | None = None
    scale: np.ndarray | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(
        cls,
        config: PopulationConfig,
        frame_shape: tuple[int, int],
        frame_rate: float,
        rng: np.random.Generator,
        *,
        cortical_positions: np.ndarray | None = None,
        degrees_per_pixel: float = 1.8,
    ) -> V1Population:
        """Draw a population. ``cortical_positions`` ``(N, 2)`` (y, x) in 0..1 across the
        field of view set the retinotopic map (neighbouring somata see neighbouring places)."""
        n = config.n_neurons
        if n <= 0:
            raise InputError(f"the population needs at least one neuron, got n_neurons={n}")
        if not 0 < config.coverage <= 1.5:
            raise InputError(f"coverage must be in (0, 1.5] (fraction of the screen), got {config.coverage}")
        height, width = frame_shape
        if cortical_positions is None:
            cortical_positions = rng.random((n, 2))
        cortical_positions = np.asarray(cortical_positions, np.float64)
        cx, cy = config.coverage_centre
        rf_x = (cx + (cortical_positions[:, 1] - 0.5) * config.coverage) * (width - 1)
        rf_y = (cy + (cortical_positions[:, 0] - 0.5) * config.coverage) * (height - 1)
        rf_x = rf_x + rng.normal(0.0, config.rf_scatter_pixels, n)
        rf_y = rf_y + rng.normal(0.0, config.rf_scatter_pixels, n)
        sigma = _log_uniform(rng, config.sigma_pixels, n)
        aspect = rng.uniform(*config.aspect_ratio, n)
        spatial_frequency = _log_uniform(rng, config.spatial_frequency_cycles_per_pixel, n)
        orientation = rng.uniform(0.0, np.pi, n)
        phase = rng.uniform(0.0, 2 * np.pi, n)
        is_complex = rng.random(n) < config.complex_fraction
        # luminance (ON or OFF) cells: an untuned blob, i.e. a Gabor of zero frequency whose
        # phase 0 or pi sets the sign
        is_luminance = rng.random(n) < config.luminance_fraction
        spatial_frequency[is_luminance] = 0.0
        phase[is_luminance] = np.where(rng.random(int(is_luminance.sum())) < 0.5, 0.0, np.pi)
        aspect[is_luminance] = 1.0
        is_complex[is_luminance] = False
        return cls(
            frame_shape=(int(height), int(width)),
            frame_rate=float(frame_rate),
            rf_x=rf_x,
            rf_y=rf_y,
            sigma=sigma,
            aspect=aspect,
            spatial_frequency=spatial_frequency,
            orientation=orientation,
            phase=phase,
            is_complex=is_complex,
            latency_s=rng.uniform(*config.latency_s, n),
            temporal_peak_s=rng.uniform(*config.temporal_peak_s, n),
            undershoot=rng.uniform(*config.temporal_undershoot, n),
            running_gain=rng.uniform(*config.running_gain, n),
            mean_rate_hz=config.mean_rate_hz * np.exp(rng.normal(0.0, config.mean_rate_spread, n)),
            spontaneous_rate_hz=config.spontaneous_rate_hz,
            max_rate_hz=config.max_rate_hz,
            threshold_sd=config.threshold_sd,
            exponent=config.exponent,
            running_half_speed_cm_s=config.running_half_speed_cm_s,
            degrees_per_pixel=degrees_per_pixel,
            eye_shift=config.eye_shift,
        )

    @property
    def n_neurons(self) -> int:
        return int(self.rf_x.shape[0])

    def parameters(self) -> dict[str, np.ndarray]:
        """Every parameter as arrays (for ``np.savez``); :meth:`from_parameters` reverses it."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = np.asarray(value)
        return out

    @classmethod
    def from_parameters(cls, params) -> V1Population:
        kwargs = {}
        for f in fields(cls):
            if f.name in params:
                value = np.asarray(params[f.name])
                kwargs[f.name] = value.item() if value.ndim == 0 else value
        kwargs["frame_shape"] = tuple(int(v) for v in kwargs["frame_shape"])
        return cls(**kwargs)

    # ------------------------------------------------------------------ filters
    def spatial_filters(self) -> np.ndarray:
        """(2, N, H*W) float32: even and odd Gabors, zero-mean, unit norm."""
        height, width = self.frame_shape
        y, x = np.mgrid[0:height, 0:width].astype(np.float64)
        dx = x[None] - self.rf_x[:, None, None]
        dy = y[None] - self.rf_y[:, None, None]
        cos, sin = np.cos(self.orientation)[:, None, None], np.sin(self.orientation)[:, None, None]
        along = dx * cos + dy * sin  # across the bars (the carrier's direction)
        across = -dx * sin + dy * cos
        sigma = self.sigma[:, None, None]
        envelope = np.exp(-0.5 * ((along / (sigma * self.aspect[:, None, None])) ** 2 + (across / sigma) ** 2))
        carrier = 2 * np.pi * self.spatial_frequency[:, None, None] * along + self.phase[:, None, None]
        pair = np.stack([envelope * np.cos(carrier), envelope * np.sin(carrier)])
        pair -= pair.mean(axis=(2, 3), keepdims=True)
        pair /= np.linalg.norm(pair.reshape(2, self.n_neurons, -1), axis=2)[:, :, None, None] + 1e-12
        return pair.reshape(2, self.n_neurons, height * width).astype(np.float32)

    def temporal_kernels(self) -> np.ndarray:
        """(N, lags) biphasic kernels sampled at the movie frame rate, lag 0 = the current frame."""
        longest = float(np.max(self.latency_s + 5.0 * self.temporal_peak_s))
        lags = np.arange(int(np.ceil(longest * self.frame_rate)) + 1)
        t = (lags[None, :] + 0.5) / self.frame_rate - self.latency_s[:, None]
        peak = self.temporal_peak_s[:, None]
        kernel = _gamma_bump(t, peak) - self.undershoot[:, None] * _gamma_bump(t, 2.5 * peak) * 0.4
        return (kernel / np.linalg.norm(kernel, axis=1, keepdims=True)).astype(np.float32)

    # ------------------------------------------------------------------ responses
    def _retinal_movie(self, movie: np.ndarray, behaviour: dict) -> np.ndarray:
        """The movie relative to grey, moved opposite to the eye so receptive fields follow gaze."""
        from .imaging import shift_frames

        frames = np.asarray(movie, np.float32) - GREY
        if not self.eye_shift or "pupil_x" not in behaviour or "pupil_y" not in behaviour:
            return frames
        sx = np.asarray(behaviour["pupil_x"], np.float64) / self.degrees_per_pixel
        sy = np.asarray(behaviour["pupil_y"], np.float64) / self.degrees_per_pixel
        return shift_frames(frames, -np.stack([sy, sx], axis=1))

    def _drive(self, movie: np.ndarray, behaviour: dict) -> np.ndarray:
        """(N, T) raw drive: temporally filtered Gabor response (simple) or energy (complex)."""
        movie = np.asarray(movie)
        if movie.ndim != 3 or tuple(movie.shape[1:]) != tuple(self.frame_shape):
            raise InputError(f"movie must be (frames, {self.frame_shape[0]}, {self.frame_shape[1]}), got {movie.shape}")
        retinal = self._retinal_movie(movie, behaviour).reshape(movie.shape[0], -1)
        filters = self.spatial_filters()
        kernels = self.temporal_kernels()
        n_frames = movie.shape[0]
        drive = np.empty((self.n_neurons, n_frames), np.float32)
        chunk = 2048
        lags = kernels.shape[1]
        # process in time chunks with a history margin so the temporal filter is exact
        for start in range(0, n_frames, chunk):
            lo = max(0, start - lags + 1)
            block = retinal[lo : start + chunk]
            projections = np.einsum("tp,knp->knt", block, filters, optimize=True)  # (2, N, t)
            filtered = np.zeros_like(projections)
            for lag in range(lags):
                filtered[:, :, lag:] += kernels[None, :, lag : lag + 1] * projections[:, :, : projections.shape[2] - lag]
            filtered = filtered[:, :, start - lo :]
            energy = np.sqrt(filtered[0] ** 2 + filtered[1] ** 2)
            drive[:, start : start + chunk] = np.where(self.is_complex[:, None], energy, filtered[0])
        return drive

    def _output(self, drive: np.ndarray) -> np.ndarray:
        z = (drive - self.drive_mean[:, None]) / self.drive_sd[:, None]
        return np.maximum(z - self.threshold_sd, 0.0) ** self.exponent

    def calibrate(self, movie: np.ndarray, behaviour: dict) -> V1Population:
        """Fix each cell's drive statistics and gain on a reference movie, so that its mean
        rate at rest on that movie equals ``mean_rate_hz``. Returns self."""
        drive = self._drive(movie, behaviour).astype(np.float64)
        # a simple cell's drive is zero on a grey screen, so it is scaled, never shifted;
        # a complex cell's energy is positive, so it is centred on its mean
        self.drive_mean = np.where(self.is_complex, drive.mean(axis=1), 0.0)
        self.drive_sd = np.sqrt(((drive - self.drive_mean[:, None]) ** 2).mean(axis=1)) + 1e-6
        mean_output = self._output(drive).mean(axis=1)
        target = np.maximum(self.mean_rate_hz - self.spontaneous_rate_hz, 0.0)
        self.scale = target / np.maximum(mean_output, 1e-6)
        return self

    def __call__(self, movie: np.ndarray, behaviour: dict) -> np.ndarray:
        """(N, T) float32 firing rates (spikes/s) for a movie shown at ``frame_rate``."""
        if self.scale is None:
            self.calibrate(movie, behaviour)
        drive = self._drive(movie, behaviour)
        gain = np.ones((1, movie.shape[0]))
        if "running" in behaviour:
            speed = np.maximum(np.asarray(behaviour["running"], np.float64), 0.0)
            gain = 1.0 + self.running_gain[:, None] * (speed / (speed + self.running_half_speed_cm_s))[None, :]
        driven = self.scale[:, None] * gain * self._output(drive)
        rates = self.spontaneous_rate_hz + self.max_rate_hz * np.tanh(driven / self.max_rate_hz)
        return rates.astype(np.float32)
