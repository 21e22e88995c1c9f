"""Time alignment: imaging-rate traces and behaviour onto stimulus frame times, per trial.

Each stimulus frame ``k`` is shown from ``t_k`` until the next frame starts (the last frame
lasts one median frame interval). A neuron's value on frame ``k`` is the time-weighted
average of its trace over that interval, treating each imaging sample as holding its value
from its own timestamp until the next sample: deconvolved activity is a rate over a window,
so averaging it over the frame is honest, while point-sampling would alias spikes into or out
of frames. When imaging is slower than the stimulus, consecutive frames share the overlapping
sample, weighted by overlap; when it is faster, every sample inside the frame contributes.

Behaviour is a continuous signal sampled on its own clock; by default it is linearly
interpolated at each frame's centre (``behaviour_method="interval"`` averages it instead).
Samples that are NaN (a lost pupil, say) are skipped by the interpolation.

Per-plane offsets: in a multi-plane recording, plane ``p`` of volume ``j`` is acquired at
``imaging_times[j] + plane_offsets[p]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, require_finite
from .recording import BEHAVIOR_CHANNELS, TIERS, NeuronTable, Recording

_ROW_CHUNK = 512  # rows per block, so cumulative sums stay small for 10,000+ neurons


@dataclass
class TrialTable:
    """Which stimulus frames make each trial."""

    trial_ids: np.ndarray
    start_frames: np.ndarray
    n_frames: np.ndarray
    tiers: np.ndarray

    def __len__(self) -> int:
        return int(self.trial_ids.shape[0])

    @classmethod
    def read_csv(cls, path: str | Path) -> TrialTable:
        path = Path(path)
        if not path.exists():
            raise InputError("file not found", path)
        table = np.atleast_1d(np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8"))
        needed = ("trial_id", "start_frame", "n_frames", "tier")
        if table.dtype.names is None or any(c not in table.dtype.names for c in needed):
            raise InputError(f"trial table needs columns {', '.join(needed)}; has {table.dtype.names}", path)
        tiers = np.char.strip(table["tier"].astype(str))
        bad = sorted(set(tiers.tolist()) - set(TIERS))
        if bad:
            raise InputError(f"unknown tier(s) {bad}; expected {list(TIERS)}", path)
        return cls(table["trial_id"].astype(int), table["start_frame"].astype(int), table["n_frames"].astype(int), tiers)

    def check_against(self, n_stimulus_frames: int, where=None) -> None:
        """Every trial fits the stimulus frames, has its own id, and shares no frame with another."""
        end = self.start_frames + self.n_frames
        if (self.start_frames < 0).any() or (self.n_frames <= 0).any():
            raise InputError("trial table has negative start frames or empty trials", where)
        if end.max(initial=0) > n_stimulus_frames:
            k = int(np.argmax(end))
            raise InputError(
                f"trial {self.trial_ids[k]} ends at stimulus frame {end[k]}, but only {n_stimulus_frames} frames have timestamps",
                where,
            )
        self.check_ids(where)
        self.check_no_overlap(where)

    def check_ids(self, where=None) -> None:
        """Ids name trials on disk (``data/videos/{id}.npy``): a repeated id would overwrite a trial."""
        if (self.trial_ids < 0).any():
            raise InputError(f"trial ids must be >= 0, got {sorted(set(self.trial_ids[self.trial_ids < 0].tolist()))}", where)
        ids, counts = np.unique(self.trial_ids, return_counts=True)
        repeated = ids[counts > 1]
        if repeated.size:
            raise InputError(
                f"trial id(s) {', '.join(str(int(i)) for i in repeated)} appear more than once; each trial needs its own id",
                where,
            )

    def check_no_overlap(self, where=None) -> None:
        """A stimulus frame belongs to one trial at most; a shared frame between a training and a
        validation/test trial would leak what the model is scored on into its training."""
        end = self.start_frames + self.n_frames
        furthest = -1  # among the trials starting earlier, the one that ends last
        clashes = []
        for k in np.argsort(self.start_frames, kind="stable"):
            if furthest >= 0 and self.start_frames[k] < end[furthest]:
                clashes.append((furthest, k))
            if furthest < 0 or end[k] > end[furthest]:
                furthest = k
        if clashes:
            described = "; ".join(
                f"trial {self.trial_ids[a]} ({self.tiers[a]}, frames {self.start_frames[a]}-{end[a] - 1}) and "
                f"trial {self.trial_ids[b]} ({self.tiers[b]}, frames {self.start_frames[b]}-{end[b] - 1})"
                for a, b in clashes[:3]
            )
            more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
            raise InputError(f"overlapping trials share stimulus frames: {described}{more}", where)


def frame_intervals(frame_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of each frame: a frame lasts until the next one; the last lasts one median interval."""
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if frame_times.ndim != 1 or frame_times.size < 2:
        raise InputError(f"need at least two frame timestamps, got shape {frame_times.shape}")
    steps = np.diff(frame_times)
    if (steps <= 0).any():
        raise InputError(f"frame timestamps are not strictly increasing (first at index {int(np.argmax(steps <= 0))})")
    ends = np.append(frame_times[1:], frame_times[-1] + np.median(steps))
    return frame_times, ends


def interval_average(values: np.ndarray, sample_times: np.ndarray, bin_starts: np.ndarray, bin_ends: np.ndarray) -> np.ndarray:
    """Time-weighted average of piecewise-constant signals over each ``[start, end)`` bin.

    ``values`` is ``(signals, samples)``; sample ``j`` holds its value from ``sample_times[j]``
    to ``sample_times[j + 1]``. Bins must lie inside the sampled time range.
    """
    values = np.atleast_2d(values)
    edges_start, edges_end = frame_intervals(sample_times)
    edges = np.append(edges_start, edges_end[-1])
    if bin_starts.min() < edges[0] - 1e-9 or bin_ends.max() > edges[-1] + 1e-9:
        raise InputError(
            f"stimulus frames span {bin_starts.min():.3f}-{bin_ends.max():.3f} s, "
            f"but the imaging covers only {edges[0]:.3f}-{edges[-1]:.3f} s"
        )
    widths = np.diff(edges)

    def locate(t):
        k = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(widths) - 1)
        return k, np.clip(t - edges[k], 0.0, widths[k])

    k0, f0 = locate(bin_starts)
    k1, f1 = locate(bin_ends)
    durations = bin_ends - bin_starts
    out = np.empty((values.shape[0], bin_starts.size), np.float32)
    for r in range(0, values.shape[0], _ROW_CHUNK):
        block = np.asarray(values[r : r + _ROW_CHUNK], dtype=np.float64)
        cumulative = np.concatenate([np.zeros((block.shape[0], 1)), np.cumsum(block * widths, axis=1)], axis=1)
        integral_end = cumulative[:, k1] + block[:, k1] * f1
        integral_start = cumulative[:, k0] + block[:, k0] * f0
        out[r : r + _ROW_CHUNK] = (integral_end - integral_start) / durations
    return out


def interpolate_at(values: np.ndarray, sample_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row at ``times``, skipping NaN samples; outside the range is an error."""
    values = np.atleast_2d(values)
    if times.min() < sample_times[0] or times.max() > sample_times[-1]:
        raise InputError(
            f"stimulus frames span {times.min():.3f}-{times.max():.3f} s, "
            f"but the signal covers only {sample_times[0]:.3f}-{sample_times[-1]:.3f} s"
        )
    out = np.empty((values.shape[0], times.size), np.float32)
    for r, row in enumerate(values):
        finite = np.isfinite(row)
        if finite.sum() < 2:
            raise InputError(f"signal {r} has fewer than two finite samples")
        out[r] = np.interp(times, sample_times[finite], row[finite])
    return out


def traces_on_frames(
    traces: np.ndarray,
    imaging_times: np.ndarray,
    stimulus_times: np.ndarray,
    *,
    plane_offset: float = 0.0,
    source: str | Path | None = None,
) -> np.ndarray:
    """Average ``(neurons, imaging frames)`` traces over each stimulus frame -> ``(neurons, stimulus frames)``."""
    traces = np.atleast_2d(traces)
    imaging_times = np.asarray(imaging_times, dtype=np.float64)
    if traces.shape[1] != imaging_times.shape[0]:
        raise InputError(
            f"traces have {traces.shape[1]} frames but there are {imaging_times.shape[0]} imaging timestamps", source
        )
    require_finite(traces, "traces", source)
    starts, ends = frame_intervals(stimulus_times)
    try:
        return interval_average(traces, imaging_times + plane_offset, starts, ends)
    except InputError as exc:
        raise InputError(exc.problem, source) from None


def _resample_behaviour(times, stacked, starts, ends, method):
    times = np.asarray(times, np.float64)
    if method == "linear":
        return interpolate_at(stacked, times, (starts + ends) / 2)
    if method == "interval":
        finite = np.isfinite(stacked).all(axis=0)
        return interval_average(stacked[:, finite], times[finite], starts, ends)
    raise ValueError(f"behaviour method must be 'linear' or 'interval', got {method!r}")


def behaviour_on_frames(
    times: np.ndarray, channels: Mapping[str, np.ndarray], stimulus_times: np.ndarray, *, method: str = "linear",
    source: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Resample behaviour channels (on their own clock) onto stimulus frames."""
    starts, ends = frame_intervals(stimulus_times)
    names = list(channels)
    stacked = np.stack([np.asarray(channels[n], dtype=np.float64) for n in names])
    try:
        resampled = _resample_behaviour(times, stacked, starts, ends, method)
    except InputError as exc:
        raise InputError(exc.problem, source) from None
    return dict(zip(names, resampled))


def _check_movie_length(n_movie: int, n_times: int, allow_unshown: bool, has: str, times: str, where) -> int:
    """How many movie frames lie after the last timestamp; refused unless ``allow_unshown``.

    One timestamp per shown frame: a movie that is too short cannot be what was shown; one that
    is too long is either a session stopped early (allowed when the manifest says so) or a
    timestamp file that lost frames, which would shift every trial silently.
    """
    if n_movie < n_times:
        raise InputError(f"the stimulus movie has {n_movie} frames but {has} {n_times} {times}", where)
    if n_movie > n_times and not allow_unshown:
        raise InputError(
            f"the stimulus movie has {n_movie} frames but {has} only {n_times} {times}: {n_movie - n_times} frames "
            "have no timestamp (dropped timestamps shift every trial); if the session stopped before the movie "
            "ended, set allow_unshown_frames = true in [stimulus]",
            where,
        )
    return n_movie - n_times


# long: thirteen keyword inputs and one sequence of alignment steps that share them (traces, stimulus
# frames, trials, behaviour); split, every step would take most of them as arguments.
def align_session(
    *,
    traces: Sequence[np.ndarray],
    imaging_times: np.ndarray,
    stimulus_frames: np.ndarray,
    stimulus_times: np.ndarray,
    trials: TrialTable,
    behaviour: Sequence[tuple[np.ndarray, Mapping[str, np.ndarray]]] = (),
    plane_offsets: Sequence[float] | None = None,
    neuron_positions: np.ndarray | None = None,
    neuron_ids: np.ndarray | None = None,
    behaviour_method: str = "linear",
    name: str = "session",
    source: str | Path | None = None,
    allow_unshown_frames: bool = False,
) -> Recording:
    """Cut a whole session into an aligned :class:`Recording`.

    ``traces`` holds one ``(neurons, imaging frames)`` array per plane (deconvolved activity,
    typically suite2p's ``spks``); ``behaviour`` holds ``(times, {channel: values})`` tables,
    each on its own clock. Channels that no table provides are filled with zeros and
    reported in ``recording.extra["missing_behaviour"]``. A movie with more frames than timestamps
    is refused unless ``allow_unshown_frames`` (the session stopped before the movie ended); the
    frames after the last timestamp are then ignored and counted in ``extra["unshown_stimulus_frames"]``.
    """
    stimulus_times = np.asarray(stimulus_times, dtype=np.float64)
    unshown = _check_movie_length(stimulus_frames.shape[0], stimulus_times.shape[0], allow_unshown_frames,
                                  "there are", "stimulus frame timestamps", source)
    trials.check_against(stimulus_times.shape[0], source)
    offsets = list(plane_offsets) if plane_offsets is not None else [0.0] * len(traces)
    if len(offsets) != len(traces):
        raise InputError(f"{len(traces)} planes of traces but {len(offsets)} plane offsets", source)

    shown = np.zeros(stimulus_times.shape[0], bool)
    for start, n in zip(trials.start_frames, trials.n_frames):
        shown[start : start + n] = True
    # Only frames inside trials need imaging coverage; resample those, in one pass per plane.
    used = np.flatnonzero(shown)
    starts, ends = frame_intervals(stimulus_times)
    per_plane = []
    for plane, (plane_traces, offset) in enumerate(zip(traces, offsets)):
        plane_traces = np.atleast_2d(plane_traces)
        if plane_traces.shape[1] != len(imaging_times):
            raise InputError(
                f"plane {plane} traces have {plane_traces.shape[1]} frames but there are {len(imaging_times)} imaging timestamps",
                source,
            )
        require_finite(plane_traces, f"plane {plane} traces", source)
        try:
            per_plane.append(interval_average(plane_traces, np.asarray(imaging_times, np.float64) + offset, starts[used], ends[used]))
        except InputError as exc:
            raise InputError(exc.problem, source) from None
    on_frames = np.full((sum(t.shape[0] for t in per_plane), stimulus_times.shape[0]), np.nan, np.float32)
    on_frames[:, used] = np.concatenate(per_plane, axis=0)

    behaviour_frames = {}
    for times, channels in behaviour:
        names = list(channels)
        stacked = np.stack([np.asarray(channels[n], dtype=np.float64) for n in names])
        try:
            resampled = _resample_behaviour(times, stacked, starts[used], ends[used], behaviour_method)
        except InputError as exc:
            raise InputError(exc.problem, source) from None
        for name_, values in zip(names, resampled):
            if name_ in behaviour_frames:
                raise InputError(f"behaviour channel {name_!r} comes from more than one table", source)
            full = np.full(stimulus_times.shape[0], np.nan, np.float32)
            full[used] = values
            behaviour_frames[name_] = full
    missing = [c for c in BEHAVIOR_CHANNELS if c not in behaviour_frames]
    unknown = sorted(set(behaviour_frames) - set(BEHAVIOR_CHANNELS))
    if unknown:
        raise InputError(f"unknown behaviour channel(s) {unknown}", source)

    videos, responses, behavior = [], [], []
    for start, n in zip(trials.start_frames, trials.n_frames):
        frames = slice(start, start + n)
        videos.append(np.asarray(stimulus_frames[frames], dtype=np.float32))
        responses.append(on_frames[:, frames])
        behavior.append(
            np.stack([behaviour_frames[c][frames] if c in behaviour_frames else np.zeros(n, np.float32) for c in BEHAVIOR_CHANNELS])
        )
    n_neurons = on_frames.shape[0]
    recording = Recording(
        videos=videos,
        responses=responses,
        behavior=behavior,
        frame_rate=float(1.0 / np.median(np.diff(stimulus_times))),
        tiers=trials.tiers,
        neurons=NeuronTable(np.arange(n_neurons) if neuron_ids is None else neuron_ids, neuron_positions),
        trial_ids=trials.trial_ids,
        name=name,
        source=Path(source) if source is not None else None,
        extra={"missing_behaviour": missing, "unshown_stimulus_frames": unshown},
    )
    return recording


def recording_from_manifest(manifest, traces: Sequence, *, signal: str = "spks") -> Recording:
    """Build the aligned recording of a lab session from its manifest and its extracted traces.

    ``manifest`` is a :class:`~movie_reconstruction.io.manifest.SessionManifest`; ``traces`` is
    one :class:`~movie_reconstruction.traces.Traces` per plane. ``signal`` picks the trace
    (``spks``: deconvolved, the default; ``F``; or ``corrected`` for ``F - 0.7 Fneu``).
    """
    from .io.daq import session_behaviour, session_times
    from .io.movies import read_stimulus_movie

    movie = read_stimulus_movie(manifest.stimulus_movie, size=manifest.stimulus_size)
    n_imaging = traces[0].n_frames if traces else None
    times = session_times(manifest, n_imaging_frames=n_imaging, n_movie_frames=movie.n_frames)
    stimulus_times, imaging_times = times.stimulus, times.imaging
    _check_movie_length(movie.n_frames, stimulus_times.size, manifest.allow_unshown_frames,
                        f"{times.stimulus_source.name} has", "timestamps", manifest.stimulus_movie)
    trials = TrialTable.read_csv(manifest.trials)
    trials.check_against(stimulus_times.size, manifest.trials)
    tables, sync_report = session_behaviour(manifest, times)  # the [behaviour] files and a [sync] wheel
    offsets = [t.plane_offset for t in traces]
    if len(manifest.plane_offsets) == len(traces) and not any(offsets):
        offsets = manifest.plane_offsets
    arrays = [t.corrected() if signal == "corrected" else getattr(t, signal) for t in traces]
    for plane, array in enumerate(arrays):
        if array.shape[1] != imaging_times.size:
            raise InputError(
                f"plane {plane} traces have {array.shape[1]} frames but {times.imaging_source.name} has "
                f"{imaging_times.size} timestamps",
                times.imaging_source,
            )
    positions = np.concatenate([t.centroids for t in traces]) if traces else None
    recording = align_session(
        traces=arrays,
        imaging_times=imaging_times,
        stimulus_frames=movie.frames,
        stimulus_times=stimulus_times,
        trials=trials,
        behaviour=[(t.times, t.channels) for t in tables],
        plane_offsets=offsets,
        neuron_positions=positions,
        behaviour_method=manifest.behaviour_method,
        name=manifest.name,
        source=manifest.path,
        allow_unshown_frames=manifest.allow_unshown_frames,
    )
    if sync_report is not None:
        recording.extra["sync"] = sync_report.to_dict()
        recording.extra["sync_summary"] = sync_report.summary()
        recording.extra["sync_line"] = sync_report.one_line()
    return recording
