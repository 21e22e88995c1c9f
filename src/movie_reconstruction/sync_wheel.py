"""Running on a wheel from a DAQ's encoder lines: wheel position (cm) over time and running speed
(cm/s) on given frame times (normally the imaging frames' times from the frame clock).

- **Quadrature rotary encoder** (two digital lines A and B, a quarter cycle apart): the pair
  (A, B) steps through four states, 00 -> 10 -> 11 -> 01 -> 00 when A leads B (forwards; swap
  the lines if your wheel reads backwards). Each change to a *neighbouring* state is one count,
  +1 or -1. A change of both lines at once skips a state, so its direction is unknown: it is
  not counted and is reported as an *invalid transition* (a glitch on both lines at once, or a
  DAQ sampling too slowly for the wheel). A glitch on one line goes to a neighbouring state and
  back: -1 then +1, so it cancels without any debouncing, unless the other line changes during
  it: then a whole cycle (4 counts) is lost. ``debounce_s`` (off by default: it must be shorter
  than the shortest real pulse, which depends on the encoder and the top speed) removes pulses
  shorter than it from each line first, which closes that gap. ``counts_per_rev`` counts these
  state changes: a disc sold as N lines (pulses per channel) per revolution gives 4 N.
- **Analogue absolute encoder**: a voltage ramping 0..``max_volts`` once per revolution, then
  wrapping to 0. Jumps of more than half a revolution between two samples are wraps (no wheel
  turns half a revolution in one sample, and noise does not jump that far), so the unwrapped
  position is continuous; noise that flickers across the wrap point adds and removes a
  revolution in turn, and a one-sample spike does the same.

Speed is the slope of a straight line fitted to the position in a centred window
(``smoothing_s``, a first-derivative Savitzky-Golay filter), then read at the frame times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

from .errors import InputError
from .sync import _debounce
from .sync_report import WheelReport

# 0.2 s: about six imaging frames at 30 Hz and shorter than the ~0.5 s a mouse takes to start or
# stop running, so onsets keep their shape; long enough that one encoder count (0.015 cm on a
# 4096-count, 20 cm wheel) moves the speed by under 0.1 cm/s, and analogue noise (0.02 V of 5 V
# per sample at 10 kHz) by ~0.1 cm/s. A straight-line fit is exact for constant acceleration, so
# a smooth speed change is neither delayed nor flattened; a corner is rounded off by at most
# acceleration x window / 8.
DEFAULT_SMOOTHING_S = 0.2
POSITION_RATE_HZ = 1000.0  # position kept on a 1 ms grid: far finer than the smoothing, and small
WRAP_THRESHOLD_REVS = 0.5  # an analogue step larger than this (in revolutions) is a wrap
_PHASE_OF_STATE = np.array([0, 3, 1, 2])  # (A << 1 | B) -> place in the cycle 00, 10, 11, 01


@dataclass
class WheelResult:
    """Running speed on the frame times, the position it came from, and what was decoded."""

    frame_times: np.ndarray  # s, session clock
    speed_cm_s: np.ndarray  # at frame_times; positive forwards
    position_times: np.ndarray  # s, session clock, on the 1 ms grid
    position_cm: np.ndarray
    report: WheelReport


def _digital_state(line: np.ndarray, name: str, min_pulse_samples: float = 0.0) -> tuple[np.ndarray, int]:
    """High/low of a digital encoder line, split half way between its low and high levels, with
    pulses shorter than ``min_pulse_samples`` removed; and how many were removed."""
    line = np.asarray(line, dtype=np.float64)
    if line.ndim != 1 or line.size < 2:
        raise InputError(f"wheel line {name} must be 1-D with samples, got shape {line.shape}")
    low, high = np.quantile(line, [0.001, 0.999])
    if high - low <= 0:
        raise InputError(f"wheel line {name} is flat: the wheel never turned, or the line is not connected")
    state = line > 0.5 * (low + high)
    if min_pulse_samples <= 1:
        return state, 0
    transitions = np.flatnonzero(state[1:] != state[:-1]) + 1
    kept, _, removed = _debounce(transitions, state[transitions], min_pulse_samples)
    toggles = np.zeros(state.size, np.int64)
    toggles[kept] = 1  # each kept event changes the level; a removed glitch left it where it was
    return state[0] ^ (np.cumsum(toggles) % 2).astype(bool), removed


def quadrature_counts(line_a, line_b, min_pulse_samples: float = 0.0) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Sample indices where the (A, B) state changes, the running count after each change, the
    number of invalid changes (both lines at once: not counted) and of short pulses removed."""
    (a, glitches_a), (b, glitches_b) = (_digital_state(line_a, "A", min_pulse_samples),
                                        _digital_state(line_b, "B", min_pulse_samples))
    if a.shape != b.shape:
        raise InputError(f"wheel lines A and B have different lengths ({a.size} and {b.size})")
    phase = _PHASE_OF_STATE[(a.astype(np.int8) << 1) | b.astype(np.int8)]
    changes = np.flatnonzero(phase[1:] != phase[:-1]) + 1
    step = (phase[changes] - phase[changes - 1]) % 4  # 1: forwards, 3: backwards, 2: skipped a state
    counts = np.cumsum(np.where(step == 1, 1, np.where(step == 3, -1, 0)))
    return changes, counts, int((step == 2).sum()), glitches_a + glitches_b


def analog_revolutions(volts: np.ndarray, max_volts: float) -> tuple[np.ndarray, int]:
    """Unwrapped wheel position (revolutions) at every sample, and the number of wraps found."""
    volts = np.asarray(volts, dtype=np.float64)
    if volts.ndim != 1 or volts.size < 2:
        raise InputError(f"the analogue wheel signal must be 1-D with samples, got shape {volts.shape}")
    top = float(np.quantile(volts, 0.999))
    if top > 1.1 * max_volts:
        raise InputError(f"the analogue wheel signal reaches {top:.3g} V, above wheel_analog_max_volts = {max_volts:g}")
    fraction = volts / max_volts
    step = np.diff(fraction)
    wraps = np.where(step < -WRAP_THRESHOLD_REVS, 1, np.where(step > WRAP_THRESHOLD_REVS, -1, 0))
    return fraction + np.concatenate([[0], np.cumsum(wraps)]), int(np.count_nonzero(wraps))


def _speed_on_grid(position_cm: np.ndarray, smoothing_s: float) -> np.ndarray:
    window = max(int(round(smoothing_s * POSITION_RATE_HZ)) | 1, 3)  # odd, at least 3 points
    if position_cm.size < window:
        raise InputError(f"the wheel recording ({position_cm.size / POSITION_RATE_HZ:.2f} s) is shorter than "
                         f"the smoothing window ({smoothing_s:g} s)")
    return savgol_filter(position_cm, window, polyorder=1, deriv=1, delta=1.0 / POSITION_RATE_HZ, mode="interp")


def _result(grid_s, position_cm, frame_times, start_time, smoothing_s, report: WheelReport) -> WheelResult:
    """Speed from the position on the grid, read at the frame times; the report's totals filled in."""
    speed = _speed_on_grid(position_cm, smoothing_s)
    times = grid_s + start_time
    frame_times = np.asarray(frame_times, dtype=np.float64)
    on_frames = np.interp(frame_times, times, speed)
    dt = 1.0 / POSITION_RATE_HZ
    forwards, backwards = float(speed[speed > 0].sum() * dt), float(np.abs(speed[speed < 0]).sum() * dt)
    report.distance_cm = float(position_cm[-1] - position_cm[0])
    report.forwards_cm, report.backwards_cm = forwards, backwards
    report.mean_speed_cm_s = float(speed.mean())
    report.max_speed_cm_s = float(np.abs(speed).max())
    report.direction = ("still" if forwards + backwards == 0 else "backwards" if forwards < 0.05 * backwards
                        else "forwards" if backwards < 0.05 * forwards else "both")
    report.frames_outside = int(((frame_times < times[0]) | (frame_times > times[-1])).sum())
    report.smoothing_s = float(smoothing_s)
    return WheelResult(frame_times, on_frames, times, position_cm, report)


def _check_geometry(diameter_cm: float, sample_rate: float, smoothing_s: float) -> None:
    if not diameter_cm or diameter_cm <= 0:
        raise InputError(f"the wheel diameter must be positive (cm), got {diameter_cm!r}")
    if not sample_rate or sample_rate <= 0:
        raise InputError(f"the DAQ sample rate must be positive, got {sample_rate!r}")
    if not smoothing_s or smoothing_s <= 0:
        raise InputError(f"the wheel smoothing window must be positive (s), got {smoothing_s!r}")


def decode_quadrature(
    line_a, line_b, sample_rate: float, *, counts_per_rev: int, diameter_cm: float, frame_times,
    start_time: float = 0.0, smoothing_s: float = DEFAULT_SMOOTHING_S, debounce_s: float = 0.0,
) -> WheelResult:
    """Wheel position and running speed from a quadrature encoder's lines A and B.

    Between counts the position is interpolated linearly, so a slow wheel (a count every few
    frames) gives a steady speed rather than bursts.
    """
    _check_geometry(diameter_cm, sample_rate, smoothing_s)
    if not counts_per_rev or int(counts_per_rev) <= 0:
        raise InputError(f"wheel_counts_per_rev must be a positive whole number, got {counts_per_rev!r}")
    changes, counts, invalid, glitches = quadrature_counts(line_a, line_b, debounce_s * sample_rate)
    cm_per_count = np.pi * diameter_cm / int(counts_per_rev)
    duration = np.asarray(line_a).size / sample_rate
    grid = np.arange(0.0, duration, 1.0 / POSITION_RATE_HZ)
    change_times = np.concatenate([[0.0], changes / sample_rate])
    position = np.interp(grid, change_times, np.concatenate([[0], counts]) * cm_per_count)
    report = WheelReport(encoder="quadrature", circumference_cm=float(np.pi * diameter_cm),
                         counts=int(counts[-1]) if counts.size else 0, transitions=int(changes.size - invalid),
                         invalid_transitions=invalid, glitches_removed=glitches)
    return _result(grid, position, frame_times, start_time, smoothing_s, report)


def decode_analog(
    volts, sample_rate: float, *, max_volts: float, diameter_cm: float, frame_times,
    start_time: float = 0.0, smoothing_s: float = DEFAULT_SMOOTHING_S,
) -> WheelResult:
    """Wheel position and running speed from an analogue absolute encoder (0..``max_volts`` per revolution).

    The unwrapped position is averaged in 1 ms bins (which also averages the signal's noise).
    """
    _check_geometry(diameter_cm, sample_rate, smoothing_s)
    if not max_volts or max_volts <= 0:
        raise InputError(f"wheel_analog_max_volts must be positive, got {max_volts!r}")
    revolutions, wraps = analog_revolutions(volts, float(max_volts))
    per_bin = max(int(round(sample_rate / POSITION_RATE_HZ)), 1)
    n_bins = revolutions.size // per_bin
    binned = revolutions[: n_bins * per_bin].reshape(n_bins, per_bin).mean(axis=1)
    grid = (np.arange(n_bins) * per_bin + 0.5 * (per_bin - 1)) / sample_rate
    if not np.isclose(sample_rate / per_bin, POSITION_RATE_HZ):  # a rate that does not bin to 1 ms: interpolate
        exact = np.arange(grid[0], grid[-1], 1.0 / POSITION_RATE_HZ)
        binned, grid = np.interp(exact, grid, binned), exact
    circumference = float(np.pi * diameter_cm)
    report = WheelReport(encoder="analog", circumference_cm=circumference, wraps=wraps,
                         revolutions=float(binned[-1] - binned[0]))
    return _result(grid, binned * circumference, frame_times, start_time, smoothing_s, report)
