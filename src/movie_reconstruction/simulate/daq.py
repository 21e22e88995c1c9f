"""Synthetic DAQ sync signals for known frame times: a digital frame clock, a vsync line and a
photodiode that toggles on every stimulus frame, with a finite rise time, slow drift of its
baseline and gain, and noise; and a wheel encoder's lines (quadrature A/B or an analogue
0..V_max ramp per revolution) for a known running speed. Used by the simulator
(``DaqConfig.write_sync_signals``) and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter


@dataclass
class SyncSignals:
    sample_rate: float
    start_time: float  # session-clock time of sample 0
    frame_clock: np.ndarray  # uint8 0/1
    vsync: np.ndarray  # uint8 0/1
    photodiode: np.ndarray  # float32, arbitrary units (volts)
    wheel_a: np.ndarray | None = None  # uint8 0/1, quadrature line A (leads B running forwards)
    wheel_b: np.ndarray | None = None
    wheel_analog: np.ndarray | None = None  # float32 volts, 0..V_max per revolution

    @property
    def sample_times(self) -> np.ndarray:
        return self.start_time + np.arange(self.frame_clock.size) / self.sample_rate

    def write_hdf5(self, path) -> None:
        import h5py

        with h5py.File(path, "w") as fh:
            fh.attrs["sample_rate"] = self.sample_rate
            fh.attrs["start_time"] = self.start_time
            for name in ("frame_clock", "vsync", "photodiode", "wheel_a", "wheel_b", "wheel_analog"):
                if getattr(self, name) is not None:
                    fh.create_dataset(name, data=getattr(self, name), compression="gzip")


def wheel_position_cm(sample_times: np.ndarray, speed_times: np.ndarray, speed_cm_s: np.ndarray) -> np.ndarray:
    """Distance run (cm) at ``sample_times``: the speed, linear between its samples, integrated exactly."""
    speed_times, speed_cm_s = np.asarray(speed_times, np.float64), np.asarray(speed_cm_s, np.float64)
    steps = 0.5 * (speed_cm_s[1:] + speed_cm_s[:-1]) * np.diff(speed_times)
    at_samples = np.concatenate([[0.0], np.cumsum(steps)])
    # between two speed samples the position is a parabola; linear interpolation of it would
    # err by up to (change of speed) x dt / 8, so integrate the linear speed exactly instead
    index = np.clip(np.searchsorted(speed_times, sample_times, side="right") - 1, 0, speed_times.size - 2)
    since = np.clip(sample_times - speed_times[index], 0.0, None)
    dt = speed_times[index + 1] - speed_times[index]
    slope = (speed_cm_s[index + 1] - speed_cm_s[index]) / dt
    inside = np.minimum(since, dt)
    return at_samples[index] + speed_cm_s[index] * inside + 0.5 * slope * inside**2


def quadrature_lines(position_cm: np.ndarray, counts_per_rev: int, diameter_cm: float) -> tuple[np.ndarray, np.ndarray]:
    """Lines A and B of a quadrature encoder at ``position_cm``: four state changes per cycle, A leading forwards."""
    counts = np.floor(np.asarray(position_cm) / (np.pi * diameter_cm / counts_per_rev)).astype(np.int64)
    phase = counts % 4  # 0: A low B low, 1: A high, 2: both high, 3: B high
    return ((phase == 1) | (phase == 2)).astype(np.uint8), ((phase == 2) | (phase == 3)).astype(np.uint8)


def analog_wheel_line(position_cm, diameter_cm: float, max_volts: float, noise_volts: float, rng) -> np.ndarray:
    """An analogue absolute encoder's voltage: 0..``max_volts`` once per revolution, plus noise."""
    turns = np.mod(np.asarray(position_cm) / (np.pi * diameter_cm), 1.0)
    return (turns * max_volts + rng.normal(0.0, noise_volts, turns.size)).astype(np.float32)


def _pulses(sample_times: np.ndarray, onsets: np.ndarray, width_s: float) -> np.ndarray:
    """1 while a pulse of ``width_s`` that started at one of ``onsets`` is on, else 0."""
    last = np.searchsorted(onsets, sample_times, side="right") - 1
    since = sample_times - onsets[np.maximum(last, 0)]
    return ((last >= 0) & (since < width_s)).astype(np.uint8)


def render_sync_signals(
    imaging_times: np.ndarray,
    stimulus_times: np.ndarray,
    rng: np.random.Generator,
    *,
    sample_rate: float = 10_000.0,
    margin_s: float = 0.5,
    pulse_s: float = 0.002,
    display_lag_s: float = 0.0167,
    display_lag_jitter_s: float = 0.0005,
    photodiode_rise_s: float = 0.0002,
    photodiode_noise: float = 0.03,
    photodiode_drift: float = 0.3,
    drift_period_s: float = 40.0,
) -> SyncSignals:
    """Signals sampled from ``margin_s`` before the first event to ``margin_s`` after the last.

    The photodiode changes at ``stimulus_times`` (what the mouse sees); vsync edges come
    ``display_lag_s`` (± jitter) earlier, as the stimulus computer asks for each flip.
    """
    imaging_times = np.asarray(imaging_times, np.float64)
    stimulus_times = np.asarray(stimulus_times, np.float64)
    vsync_times = stimulus_times - display_lag_s - np.abs(rng.normal(0.0, display_lag_jitter_s, stimulus_times.size))
    start = min(imaging_times[0], vsync_times[0]) - margin_s
    stop = max(imaging_times[-1], stimulus_times[-1]) + margin_s
    t = start + np.arange(int(np.ceil((stop - start) * sample_rate))) / sample_rate

    shown = np.searchsorted(stimulus_times, t, side="right")  # frames shown so far
    square = (shown % 2).astype(np.float64)  # the patch toggles on every frame
    a = np.exp(-1.0 / (sample_rate * photodiode_rise_s))
    smooth, _ = lfilter([1.0 - a], [1.0, -a], square, zi=[0.0])
    phase = rng.uniform(0, 2 * np.pi, 2)
    baseline = 0.2 + photodiode_drift * 0.5 * (1 + np.sin(2 * np.pi * t / drift_period_s + phase[0]))
    gain = 1.0 + photodiode_drift * np.sin(2 * np.pi * t / (1.7 * drift_period_s) + phase[1])
    photodiode = baseline + gain * smooth + rng.normal(0.0, photodiode_noise, t.size)
    return SyncSignals(
        sample_rate=float(sample_rate),
        start_time=float(start),
        frame_clock=_pulses(t, imaging_times, pulse_s),
        vsync=_pulses(t, vsync_times, pulse_s),
        photodiode=photodiode.astype(np.float32),
    )


def add_wheel(signals: SyncSignals, running_times, running_cm_s, daq, rng: np.random.Generator) -> None:
    """The wheel encoder lines ``daq.wheel_encoder`` names, for the running speed given (cm/s at running_times)."""
    if daq.wheel_encoder not in ("quadrature", "analog"):
        raise ValueError(f"unknown wheel_encoder {daq.wheel_encoder!r}; use 'quadrature', 'analog' or ''")
    position = wheel_position_cm(signals.sample_times, running_times, running_cm_s)
    if daq.wheel_encoder == "quadrature":
        signals.wheel_a, signals.wheel_b = quadrature_lines(position, daq.wheel_counts_per_rev, daq.wheel_diameter_cm)
    else:
        signals.wheel_analog = analog_wheel_line(position, daq.wheel_diameter_cm, daq.wheel_analog_max_volts,
                                                 daq.wheel_analog_noise_volts, rng)


def write_timing(folder: Path, imaging_times: np.ndarray, stimulus_times: np.ndarray, daq, rng: np.random.Generator,
                 running: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """A simulated session's timing: timestamp files, or (``daq.write_sync_signals``, a
    :class:`~movie_reconstruction.simulate.config.DaqConfig`) the DAQ's raw sync signals, with
    the times they encode kept in ground_truth/ for checking. With ``daq.wheel_encoder`` the DAQ
    also records the wheel turning at ``running`` = (times, cm/s)."""
    times = {"imaging_frame_times.npy": imaging_times, "stimulus_frame_times.npy": stimulus_times}
    if not daq.write_sync_signals:
        for name, values in times.items():
            np.save(folder / "timing" / name, np.asarray(values, np.float64))
        return
    signals = render_sync_signals(
        imaging_times, stimulus_times, rng, sample_rate=daq.sample_rate_hz, display_lag_s=daq.display_lag_s,
        photodiode_noise=daq.photodiode_noise, photodiode_drift=daq.photodiode_drift,
    )
    if daq.wheel_encoder and running is not None:
        add_wheel(signals, running[0], running[1], daq, rng)  # after the other signals: they stay as they were
    signals.write_hdf5(folder / "timing" / "daq.h5")
    for name, values in times.items():
        np.save(folder / "ground_truth" / name, np.asarray(values, np.float64))
