"""DAQ recordings of sync signals (frame clock, vsync, photodiode, wheel encoder) and the manifest's
``[sync]`` section.

A DAQ file is one of:

- **HDF5** (``.h5``, ``.hdf5``): one 1-D dataset per channel, named by its path in the file;
  the sample rate in an attribute ``sample_rate`` (or ``fs``, ``sampling_rate``) of the file or
  of the dataset, unless the manifest gives it;
- **NPZ**: one 1-D array per channel; the sample rate as a scalar ``sample_rate`` array or in
  the manifest;
- **raw binary** (any other suffix, e.g. ``.bin``, ``.dat``): interleaved samples
  ``(samples, channels)`` of one ``dtype``, with the sample rate and the channel order given in
  the manifest (``channels = ["frame_clock", "vsync", "photodiode"]``).

Sample 0 is at ``start_time`` seconds on the session clock (an attribute or array
``start_time``, or the manifest's ``start_time``; default 0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..sync import SyncResult, frame_times_from_signals
from ..sync_report import SyncReport
from ..sync_wheel import DEFAULT_SMOOTHING_S, WheelResult, decode_analog, decode_quadrature

RATE_NAMES = ("sample_rate", "fs", "sampling_rate", "rate")
ROLES = ("frame_clock", "vsync", "photodiode")


@dataclass
class DaqRecording:
    sample_rate: float
    channels: dict[str, np.ndarray]
    start_time: float = 0.0
    source: Path | None = None


@dataclass
class SyncSpec:
    """The manifest's ``[sync]`` section: which file, and which channel plays which role."""

    file: Path
    frame_clock: str | None = None
    vsync: str | None = None
    photodiode: str | None = None
    sample_rate: float | None = None
    channels: list[str] = field(default_factory=list)  # raw binary: channel order
    dtype: str = "int16"  # raw binary
    start_time: float | None = None
    refresh_hz: float = 60.0
    debounce_s: float = 1e-4
    pulses_per_frame: int = 1
    max_display_lag_s: float = 0.1
    wheel_a: str | None = None  # quadrature encoder: line A (A leading B is forwards)
    wheel_b: str | None = None
    wheel_counts_per_rev: int | None = None  # state changes of A and B per revolution (4 x the disc's lines)
    wheel_analog: str | None = None  # analogue absolute encoder: 0..wheel_analog_max_volts per revolution
    wheel_analog_max_volts: float | None = None
    wheel_diameter_cm: float | None = None
    wheel_smoothing_s: float = DEFAULT_SMOOTHING_S
    wheel_debounce_s: float = 0.0  # quadrature: drop pulses shorter than this (0: off)

    @property
    def has_wheel(self) -> bool:
        return bool(self.wheel_a or self.wheel_b or self.wheel_analog)


def _first_attr(attrs, names):
    for name in names:
        if name in attrs:
            return float(np.asarray(attrs[name]).squeeze())
    return None


def read_daq(path, names, *, sample_rate=None, channels=(), dtype="int16", start_time=None) -> DaqRecording:
    """Read the channels ``names`` of a DAQ file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("DAQ file not found", path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        rate, start, data = _read_hdf5(path, names)
    elif suffix == ".npz":
        rate, start, data = _read_npz(path, names)
    else:
        rate, start, data = None, None, _read_binary(path, names, channels, dtype)
    rate = sample_rate if sample_rate is not None else rate
    if rate is None or not np.isfinite(rate) or rate <= 0:
        raise InputError("no sample rate: give [sync] sample_rate (Hz) or store a 'sample_rate' attribute", path)
    lengths = {n: a.shape for n, a in data.items()}
    if len({s for s in lengths.values()}) > 1:
        raise InputError(f"DAQ channels have different lengths: {lengths}", path)
    start = start_time if start_time is not None else (start or 0.0)
    return DaqRecording(float(rate), data, float(start), path)


def _check_1d(array: np.ndarray, name: str, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 1:
        raise InputError(f"DAQ channel {name!r} must be 1-D, has shape {array.shape}", path)
    return array


def _read_hdf5(path: Path, names):
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            data = {}
            for name in names:
                if name not in fh or not isinstance(fh[name], h5py.Dataset):
                    available = []
                    fh.visititems(lambda key, obj: available.append(key) if isinstance(obj, h5py.Dataset) else None)
                    raise InputError(f"no dataset {name!r}; the file has {available}", path)
                data[name] = _check_1d(fh[name][()], name, path)
            rate = _first_attr(fh.attrs, RATE_NAMES)
            for name in names:
                rate = rate if rate is not None else _first_attr(fh[name].attrs, RATE_NAMES)
            start = _first_attr(fh.attrs, ("start_time",))
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc})", path) from None
    return rate, start, data


def _read_npz(path: Path, names):
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [n for n in names if n not in npz.files]
            if missing:
                raise InputError(f"no array(s) {missing}; the file has {npz.files}", path)
            data = {n: _check_1d(npz[n], n, path) for n in names}
            rate = float(npz["sample_rate"]) if "sample_rate" in npz.files else None
            start = float(npz["start_time"]) if "start_time" in npz.files else None
    except (ValueError, OSError) as exc:
        raise InputError(f"not a readable NPZ file ({exc})", path) from None
    return rate, start, data


def _read_binary(path: Path, names, channels, dtype):
    if not channels:
        raise InputError("a raw binary DAQ file needs [sync] channels = [...] (the channel order)", path)
    try:
        kind = np.dtype(dtype)
    except TypeError:
        raise InputError(f"unknown [sync] dtype {dtype!r}", path) from None
    size = path.stat().st_size
    frame = kind.itemsize * len(channels)
    if size % frame:
        raise InputError(f"file size {size} is not a whole number of {len(channels)}-channel {kind} samples", path)
    samples = np.memmap(path, dtype=kind, mode="r", shape=(size // frame, len(channels)))
    missing = [n for n in names if n not in channels]
    if missing:
        raise InputError(f"channel(s) {missing} not in [sync] channels {list(channels)}", path)
    return {n: np.asarray(samples[:, list(channels).index(n)]) for n in names}


def parse_sync_section(section: dict, existing, manifest: Path) -> SyncSpec:
    """A :class:`SyncSpec` from the manifest's ``[sync]`` table; ``existing(value, what)`` resolves
    and checks a path the way the manifest does its other paths."""
    if "file" not in section:
        raise InputError("[sync] needs 'file' (the DAQ recording)", manifest)
    file = existing(section["file"], "DAQ file")
    known = {f for f in SyncSpec.__dataclass_fields__} - {"file"}
    unknown = sorted(set(section) - known - {"file"})
    if unknown:
        raise InputError(f"unknown [sync] setting(s) {unknown}; known: {sorted(known)}", manifest)
    values = {k: section[k] for k in known if k in section}
    spec = SyncSpec(file=file, **values)
    if spec.vsync is None and spec.photodiode is None and spec.frame_clock is None and not spec.has_wheel:
        raise InputError("[sync] names no channel: give frame_clock, and vsync and/or photodiode", manifest)
    _check_wheel(spec, manifest)
    return spec


def _positive(spec: SyncSpec, key: str, manifest: Path, kind=float) -> None:
    value = getattr(spec, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (kind is int and value != int(value)):
        what = "a positive whole number" if kind is int else "a positive number"
        raise InputError(f"[sync] {key} must be {what}, got {value!r}", manifest)


def _check_wheel(spec: SyncSpec, manifest: Path) -> None:
    """The wheel keys of ``[sync]`` are complete and of one encoder kind."""
    quadrature, analog = bool(spec.wheel_a or spec.wheel_b), bool(spec.wheel_analog)
    if not quadrature and not analog:
        given = [k for k in ("wheel_counts_per_rev", "wheel_analog_max_volts", "wheel_diameter_cm") if getattr(spec, k)]
        if given:
            raise InputError(f"[sync] gives {given} but no wheel line (wheel_a and wheel_b, or wheel_analog)", manifest)
        return
    if quadrature and analog:
        raise InputError("[sync] names a quadrature wheel (wheel_a, wheel_b) and an analogue one (wheel_analog): keep one",
                         manifest)
    if quadrature and not (spec.wheel_a and spec.wheel_b):
        raise InputError("[sync] a quadrature wheel needs both wheel_a and wheel_b", manifest)
    needed = ["wheel_diameter_cm", "wheel_counts_per_rev" if quadrature else "wheel_analog_max_volts"]
    missing = [k for k in needed if getattr(spec, k) is None]
    if missing:
        raise InputError(f"[sync] the wheel needs {missing}", manifest)
    for key in needed + ["wheel_smoothing_s"]:
        _positive(spec, key, manifest, int if key == "wheel_counts_per_rev" else float)
    if not isinstance(spec.wheel_debounce_s, (int, float)) or spec.wheel_debounce_s < 0:
        raise InputError(f"[sync] wheel_debounce_s must be 0 or more (s), got {spec.wheel_debounce_s!r}", manifest)


def wheel_from_sync(spec: SyncSpec, frame_times: np.ndarray) -> WheelResult:
    """Running speed on ``frame_times`` from the wheel encoder the :class:`SyncSpec` names."""
    names = [spec.wheel_a, spec.wheel_b] if spec.wheel_a else [spec.wheel_analog]
    daq = read_daq(spec.file, names, sample_rate=spec.sample_rate, channels=spec.channels, dtype=spec.dtype,
                   start_time=spec.start_time)
    common = {"diameter_cm": float(spec.wheel_diameter_cm), "frame_times": frame_times,
              "start_time": daq.start_time, "smoothing_s": float(spec.wheel_smoothing_s)}
    try:
        if spec.wheel_a:
            return decode_quadrature(daq.channels[spec.wheel_a], daq.channels[spec.wheel_b], daq.sample_rate,
                                     counts_per_rev=int(spec.wheel_counts_per_rev),
                                     debounce_s=float(spec.wheel_debounce_s), **common)
        return decode_analog(daq.channels[spec.wheel_analog], daq.sample_rate,
                             max_volts=float(spec.wheel_analog_max_volts), **common)
    except InputError as exc:
        raise InputError(exc.problem, exc.path or spec.file) from None


def times_from_sync(spec: SyncSpec, *, n_imaging_frames=None, n_movie_frames=None, stimulus_frame_rate=None) -> SyncResult:
    """Imaging and stimulus frame times from the DAQ file a :class:`SyncSpec` names."""
    roles = {role: getattr(spec, role) for role in ROLES if getattr(spec, role)}
    daq = read_daq(spec.file, sorted(set(roles.values())), sample_rate=spec.sample_rate, channels=spec.channels,
                   dtype=spec.dtype, start_time=spec.start_time)
    try:
        return frame_times_from_signals(
            daq.sample_rate,
            **{role: daq.channels[name] for role, name in roles.items()},
            n_imaging_frames=n_imaging_frames,
            n_movie_frames=n_movie_frames,
            refresh_hz=spec.refresh_hz,
            stimulus_frame_rate=stimulus_frame_rate,
            debounce_s=spec.debounce_s,
            pulses_per_frame=spec.pulses_per_frame,
            max_display_lag_s=spec.max_display_lag_s,
            start_time=daq.start_time,
            source=str(spec.file),
        )
    except InputError as exc:
        if exc.path is not None:
            raise
        raise InputError(exc.problem, spec.file) from None


@dataclass
class SessionTimes:
    """Imaging and stimulus frame times of a manifest's session, from timestamp files or sync signals."""

    imaging: np.ndarray
    stimulus: np.ndarray
    imaging_source: Path  # the file the times came from (for error messages and provenance)
    stimulus_source: Path
    sync_report: object | None = None  # a sync.SyncReport when the DAQ signals were used


def session_times(manifest, *, n_imaging_frames: int | None, n_movie_frames: int | None) -> SessionTimes:
    """Frame times for a :class:`~movie_reconstruction.io.manifest.SessionManifest`: timestamp files
    where it names them, the ``[sync]`` DAQ signals otherwise."""
    from .timestamps import read_times

    result = None
    if manifest.sync is not None and (manifest.imaging_frame_times is None or manifest.stimulus_frame_times is None):
        result = times_from_sync(manifest.sync, n_imaging_frames=n_imaging_frames, n_movie_frames=n_movie_frames,
                                 stimulus_frame_rate=manifest.stimulus_frame_rate)
    imaging = read_times(manifest.imaging_frame_times) if manifest.imaging_frame_times else result.imaging_times
    stimulus = read_times(manifest.stimulus_frame_times) if manifest.stimulus_frame_times else result.stimulus_times
    if imaging is None or stimulus is None:
        missing = "frame_clock" if imaging is None else "vsync or photodiode"
        raise InputError(f"[sync] names no {missing} channel and there is no frame_times file for it", manifest.path)
    return SessionTimes(
        imaging=imaging,
        stimulus=stimulus,
        imaging_source=manifest.imaging_frame_times or manifest.sync.file,
        stimulus_source=manifest.stimulus_frame_times or manifest.sync.file,
        sync_report=result.report if result is not None else None,
    )


def session_behaviour(manifest, times: SessionTimes) -> tuple[list, SyncReport | None]:
    """The behaviour tables of a manifest's session and its sync report.

    The tables are the ``[behaviour]`` files and, when ``[sync]`` names a wheel encoder, the
    running speed decoded from it on the imaging frame times; the report then includes the
    wheel. A file that also gives ``running`` is refused: neither may silently win.
    """
    from .behaviour import BehaviourTable, read_behaviour

    tables = [read_behaviour(p, columns=manifest.behaviour_columns) for p in manifest.behaviour_files]
    report = times.sync_report
    if manifest.sync is None or not manifest.sync.has_wheel:
        return tables, report
    for table in tables:
        if "running" in table.channels:
            raise InputError("gives a 'running' channel and the manifest's [sync] wheel encoder gives one too: "
                             "remove the file from [behaviour] files (or ignore its column in [behaviour.columns]), "
                             "or the wheel from [sync]", table.source)
    wheel = wheel_from_sync(manifest.sync, times.imaging)
    tables.append(BehaviourTable(wheel.frame_times, {"running": wheel.speed_cm_s}, manifest.sync.file))
    if report is None:
        return tables, SyncReport(None, None, str(manifest.sync.file), wheel=wheel.report)
    return tables, dataclasses.replace(report, wheel=wheel.report)
