"""Frame times from raw sync signals recorded by a DAQ: the microscope's frame clock, the
stimulus computer's vsync (flip) line and a photodiode on a patch in the corner of the screen.

- **Frame clock** (digital): one rising edge per imaging frame. Edges are found where the
  line crosses half way between its low and high levels, with the crossing placed between
  samples by linear interpolation (so a 10 kHz DAQ gives ~0.05 ms, not 0.1 ms, resolution).
  Debouncing: transitions closer together than ``debounce_s`` are one event, decided by the
  level before and after it; contact bounce becomes one edge at its first transition, a glitch
  (a short pulse that returns to where it was) disappears.
- **Vsync** (digital): one rising edge per stimulus frame flip, as sent by the stimulus
  software. It says when the flip was asked for, not when the screen changed.
- **Photodiode** (analog): the patch toggles black/white on every stimulus frame, so every
  transition, up or down, is a frame appearing on screen. The threshold follows slow drift of
  the baseline and gain (a local envelope, block by block), and has hysteresis so noise near
  the threshold cannot make a transition twice.
- With both, each vsync edge is paired with the photodiode transition that follows it: the
  photodiode times are used (they are what the mouse saw), and the display lag is reported.

Flip intervals are whole numbers of monitor refreshes. An interval longer than the nominal
one by ``n`` refreshes means the stimulus computer missed ``n`` flips and the previous movie
frame stayed on screen that much longer (a *dropped* flip: the frame is duplicated on screen);
a shorter one means a frame was shown too briefly (the software catching up). Intervals that
are not close to a whole number of refreshes are *irregular* (a missed or spurious edge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .sync_report import DroppedFlip, ImagingClockReport, StimulusSyncReport, SyncReport

_ENVELOPE_BLOCK_S = 0.25  # photodiode envelope: long enough to hold several frames, short next to drift


# ------------------------------------------------------------------------------------ edges
def _crossing_times(signal: np.ndarray, index: np.ndarray, threshold, sample_rate: float) -> np.ndarray:
    """Times (s) where the signal crosses ``threshold`` between samples ``index - 1`` and ``index``."""
    before, after = signal[index - 1], signal[index]
    level = threshold[index] if np.ndim(threshold) else threshold
    step = after - before
    fraction = np.where(step != 0, (level - before) / np.where(step != 0, step, 1.0), 1.0)
    return (index - 1 + np.clip(fraction, 0.0, 1.0)) / sample_rate


def _debounce(transitions: np.ndarray, states_after: np.ndarray, min_samples: float):
    """Merge transitions closer than ``min_samples`` into events; returns (first index, new state, n glitches).

    An event whose level before and after is the same (a glitch) is dropped.
    """
    if transitions.size == 0:
        return transitions, states_after, 0
    new_event = np.concatenate([[True], np.diff(transitions) >= min_samples])
    starts = np.flatnonzero(new_event)
    ends = np.append(starts[1:], transitions.size) - 1
    before = ~states_after[starts]  # a transition's previous level is the opposite of its new one
    after = states_after[ends]
    real = before != after
    return transitions[starts[real]], after[real], int((~real).sum())


def digital_edges(
    line: np.ndarray, sample_rate: float, *, debounce_s: float = 1e-4, threshold: float | None = None,
    polarity: str = "rising",
) -> tuple[np.ndarray, int]:
    """Edge times (s from the first sample) of a digital line and the number of glitches ignored.

    ``threshold`` defaults to half way between the line's low and high levels (its 0.1st and
    99.9th percentiles). ``polarity``: ``rising``, ``falling`` or ``both``.
    """
    line = np.asarray(line, dtype=np.float64)
    if line.ndim != 1 or line.size < 2:
        raise InputError(f"a sync line must be 1-D with samples, got shape {line.shape}")
    if threshold is None:
        low, high = np.quantile(line, [0.001, 0.999])
        if high - low <= 0:
            raise InputError("the sync line is flat (no pulses)")
        threshold = 0.5 * (low + high)
    state = line > threshold
    transitions = np.flatnonzero(state[1:] != state[:-1]) + 1
    index, rising, glitches = _debounce(transitions, state[transitions], debounce_s * sample_rate)
    keep = {"rising": rising, "falling": ~rising, "both": np.ones_like(rising)}[polarity]
    return _crossing_times(line, index[keep], threshold, sample_rate), glitches


def _envelope(signal: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Slowly varying low and high levels of a toggling signal, per block, interpolated to every sample.

    Blocks where the signal hardly changes (the patch held still) take their levels from the
    neighbouring blocks, so a pause does not collapse the threshold onto the noise.
    """
    block = max(int(_ENVELOPE_BLOCK_S * sample_rate), 8)
    n_blocks = max(signal.size // block, 1)
    trimmed = signal[: n_blocks * block].reshape(n_blocks, block)
    low, high = np.percentile(trimmed, [5, 95], axis=1)
    spread = high - low
    good = spread > 0.5 * np.median(spread[spread > 0]) if (spread > 0).any() else spread > 0
    if not good.any():
        raise InputError("the photodiode signal never toggles")
    centres = (np.arange(n_blocks) + 0.5) * block
    samples = np.arange(signal.size)
    return np.interp(samples, centres[good], low[good]), np.interp(samples, centres[good], high[good])


def photodiode_transitions(
    signal: np.ndarray, sample_rate: float, *, hysteresis: float = 0.2, debounce_s: float = 1e-3,
) -> tuple[np.ndarray, int]:
    """Times (s from the first sample) of every photodiode transition, up or down, and the glitches ignored.

    A Schmitt trigger on the signal normalised by its local envelope: it goes high above
    ``0.5 + hysteresis`` and low below ``0.5 - hysteresis``; each transition is timed where the
    signal crosses the local midpoint, between samples.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1 or signal.size < 2:
        raise InputError(f"the photodiode must be 1-D with samples, got shape {signal.shape}")
    low, high = _envelope(signal, sample_rate)
    normalised = (signal - low) / np.maximum(high - low, 1e-12)
    state = _schmitt(normalised, 0.5 + hysteresis, 0.5 - hysteresis)
    switches = np.flatnonzero(state[1:] != state[:-1]) + 1
    index, _, glitches = _debounce(switches, state[switches], debounce_s * sample_rate)
    # the trigger fires past the hysteresis band; step back to the last midpoint crossing before it
    above = normalised > 0.5
    crossings = np.flatnonzero(above[1:] != above[:-1]) + 1
    midpoint = crossings[np.clip(np.searchsorted(crossings, index, side="right") - 1, 0, None)]
    return _crossing_times(normalised, midpoint, 0.5, sample_rate), glitches


def _schmitt(normalised: np.ndarray, upper: float, lower: float) -> np.ndarray:
    """Boolean state with hysteresis: only a crossing of the far band changes it."""
    decided = np.full(normalised.size, -1, np.int8)
    decided[normalised > upper] = 1
    decided[normalised < lower] = 0
    last = np.maximum.accumulate(np.where(decided >= 0, np.arange(normalised.size), -1))
    first = decided[np.flatnonzero(decided >= 0)[0]] if (decided >= 0).any() else 0
    state = np.where(last >= 0, decided[np.maximum(last, 0)], first)
    return state.astype(bool)


# ------------------------------------------------------------------------------------ frames
def imaging_frame_times(
    pulse_times: np.ndarray, n_frames: int | None = None, *, pulses_per_frame: int = 1, glitches: int = 0,
) -> tuple[np.ndarray, ImagingClockReport]:
    """One time per imaging frame (volume) from frame-clock pulse times, and what was odd about them.

    With ``pulses_per_frame`` > 1 (a clock that pulses per plane), every n-th pulse starts a
    frame. Pulses after the last frame are ignored; frames after the last recorded pulse (the
    DAQ stopped first) are extrapolated at the median period, and both are reported.
    """
    pulses = np.asarray(pulse_times, dtype=np.float64)[::max(int(pulses_per_frame), 1)]
    if pulses.size < 2:
        raise InputError(f"the frame clock has {pulses.size} pulse(s); need at least two")
    intervals = np.diff(pulses)
    typical = intervals <= 1.5 * np.median(intervals)
    period = float(intervals[typical].mean())  # the mean of the regular intervals: finer than the DAQ's sampling
    gaps = [(int(i), float(intervals[i])) for i in np.flatnonzero(~typical)]
    report = ImagingClockReport(n_pulses=int(pulses.size), n_frames=n_frames, frame_rate_hz=1.0 / period,
                                gaps=gaps, glitches_removed=glitches)
    if n_frames is None or n_frames == pulses.size:
        return pulses, report
    if n_frames < pulses.size:
        report.extra_at_end = int(pulses.size - n_frames)
        return pulses[:n_frames], report
    report.missing_at_end = int(n_frames - pulses.size)
    tail = pulses[-1] + period * np.arange(1, report.missing_at_end + 1)
    return np.concatenate([pulses, tail]), report


def classify_flips(
    flip_times: np.ndarray, refresh_hz: float, *, frame_rate_hz: float | None = None, tolerance: float = 0.25,
) -> StimulusSyncReport:
    """Sort the flip intervals into nominal, dropped (longer), short and irregular ones.

    The nominal number of refreshes per frame comes from ``frame_rate_hz`` or, without it, the
    most common interval. ``tolerance``: how far (in refreshes) an interval may be from a whole
    number before it counts as irregular.
    """
    flips = np.asarray(flip_times, dtype=np.float64)
    if flips.size < 2:
        raise InputError(f"found {flips.size} stimulus flip(s); need at least two")
    refresh = 1.0 / float(refresh_hz)
    in_refreshes = np.diff(flips) / refresh
    counts = np.rint(in_refreshes).astype(int)
    if frame_rate_hz:
        nominal = max(int(round(refresh_hz / frame_rate_hz)), 1)
    else:
        values, occurrences = np.unique(counts[counts > 0], return_counts=True)
        nominal = int(values[np.argmax(occurrences)]) if values.size else 1
    report = StimulusSyncReport(source="", n_flips=int(flips.size), refresh_hz=float(refresh_hz), nominal_refreshes=nominal)
    off = np.abs(in_refreshes - counts) > tolerance
    for i in np.flatnonzero(off | (counts <= 0)):
        report.irregular.append((int(i + 1), float(in_refreshes[i] * refresh)))
    regular = ~off & (counts > 0)
    for i in np.flatnonzero(regular & (counts != nominal)):
        entry = DroppedFlip(frame=int(i + 1), time_s=float(flips[i + 1]), extra_refreshes=int(counts[i] - nominal))
        (report.dropped if entry.extra_refreshes > 0 else report.short).append(entry)
    return report


def pair_vsync_with_photodiode(vsync: np.ndarray, photodiode: np.ndarray, max_lag_s: float) -> tuple[np.ndarray, dict]:
    """Stimulus frame times from both lines: each vsync edge takes the first photodiode transition
    within ``max_lag_s`` after it; edges without one take vsync + the median lag."""
    vsync, photodiode = np.asarray(vsync, np.float64), np.asarray(photodiode, np.float64)
    if photodiode.size == 0:
        raise InputError("the photodiode shows no transitions")
    nxt = np.searchsorted(photodiode, vsync, side="left")
    has = nxt < photodiode.size
    lag = np.full(vsync.size, np.inf)
    lag[has] = photodiode[nxt[has]] - vsync[has]
    matched = lag <= max_lag_s
    # two vsync edges must not claim one transition: keep the later (closer) edge's claim
    claimed = nxt[matched]
    duplicate = np.zeros(matched.sum(), bool)
    duplicate[:-1] = claimed[:-1] == claimed[1:]
    matched[np.flatnonzero(matched)[duplicate]] = False
    if not matched.any():
        raise InputError(f"no photodiode transition follows a vsync edge within {max_lag_s * 1e3:.0f} ms")
    lags = lag[matched]
    median_lag = float(np.median(lags))
    times = np.where(matched, vsync + np.where(np.isfinite(lag), lag, 0.0), vsync + median_lag)
    spread = float(np.percentile(lags, 95) - np.percentile(lags, 5)) if lags.size > 1 else 0.0
    return times, {"display_lag_s": median_lag, "display_lag_spread_s": spread, "unmatched_vsync": int((~matched).sum())}


@dataclass
class SyncResult:
    """Imaging and stimulus frame times (s, on the DAQ's clock) and the report of how they were found."""

    imaging_times: np.ndarray | None
    stimulus_times: np.ndarray | None
    report: SyncReport


def frame_times_from_signals(
    sample_rate: float,
    *,
    frame_clock: np.ndarray | None = None,
    vsync: np.ndarray | None = None,
    photodiode: np.ndarray | None = None,
    n_imaging_frames: int | None = None,
    n_movie_frames: int | None = None,
    refresh_hz: float = 60.0,
    stimulus_frame_rate: float | None = None,
    debounce_s: float = 1e-4,
    pulses_per_frame: int = 1,
    max_display_lag_s: float = 0.1,
    start_time: float = 0.0,
    source: str | None = None,
) -> SyncResult:
    """Imaging frame times from the frame clock and stimulus frame times from vsync and/or the photodiode.

    ``start_time`` is the time of the first sample on the session clock. ``n_movie_frames``: a
    session that shows more flips than the movie has frames is an error (the wrong movie).
    """
    if not sample_rate or sample_rate <= 0:
        raise InputError(f"the DAQ sample rate must be positive, got {sample_rate!r}")
    imaging_times = stimulus_times = None
    imaging_report = stimulus_report = None
    if frame_clock is not None:
        pulses, glitches = digital_edges(frame_clock, sample_rate, debounce_s=debounce_s)
        imaging_times, imaging_report = imaging_frame_times(
            pulses + start_time, n_imaging_frames, pulses_per_frame=pulses_per_frame, glitches=glitches
        )
    if vsync is not None or photodiode is not None:
        stimulus_times, stimulus_report = _stimulus_times(
            sample_rate, vsync, photodiode, refresh_hz, stimulus_frame_rate, debounce_s, max_display_lag_s
        )
        stimulus_times = stimulus_times + start_time
        stimulus_report.n_movie_frames = n_movie_frames
        if n_movie_frames is not None and stimulus_times.size > n_movie_frames:
            raise InputError(
                f"the sync signals show {stimulus_times.size} stimulus flips but the movie has only {n_movie_frames} frames"
            )
    return SyncResult(imaging_times, stimulus_times, SyncReport(imaging_report, stimulus_report, source))


def _stimulus_times(sample_rate, vsync, photodiode, refresh_hz, frame_rate, debounce_s, max_lag_s):
    extra = {}
    glitches = 0
    if vsync is not None:
        flips, glitches = digital_edges(vsync, sample_rate, debounce_s=debounce_s)
    if photodiode is not None:
        transitions, more = photodiode_transitions(photodiode, sample_rate)
        glitches += more
    if vsync is not None and photodiode is not None:
        times, extra = pair_vsync_with_photodiode(flips, transitions, max_lag_s)
        source = "vsync+photodiode"
    elif vsync is not None:
        times, source = flips, "vsync"
    else:
        times, source = transitions, "photodiode"
    report = classify_flips(times, refresh_hz, frame_rate_hz=frame_rate)
    report.source = source
    report.glitches_removed = glitches
    for key, value in extra.items():
        setattr(report, key, value)
    return times, report
