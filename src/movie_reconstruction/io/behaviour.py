"""Behaviour tables (running, pupil) from CSV, NPY or NPZ, each with its own timestamps.

A table has one time column (seconds on the session's shared clock) and one or more known
channels. Column names are matched case-insensitively against a small list of aliases; an
unknown column is an error (we would rather stop than silently drop a signal), unless the
caller maps it with ``columns={"their_name": "running"}`` or ignores it with ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, require_finite
from ..recording import BEHAVIOR_CHANNELS

TIME_ALIASES = ("time", "times", "timestamp", "timestamps", "t", "time_s", "seconds")
CHANNEL_ALIASES = {
    "running": ("running", "run", "speed", "running_speed", "treadmill", "velocity"),
    "pupil": ("pupil", "pupil_area", "pupil_size", "pupil_diameter", "pupil_dilation"),
    "pupil_x": ("pupil_x", "pupil_center_x", "eye_x", "gaze_x"),
    "pupil_y": ("pupil_y", "pupil_center_y", "eye_y", "gaze_y"),
}


@dataclass
class BehaviourTable:
    times: np.ndarray  # (samples,) seconds
    channels: dict[str, np.ndarray]  # name -> (samples,)
    source: Path | None = None


def _canonical(name: str, columns: dict | None, path: Path):
    key = name.strip()
    if columns and key in columns:
        return columns[key]
    lowered = key.lower()
    if lowered in TIME_ALIASES:
        return "time"
    for channel, aliases in CHANNEL_ALIASES.items():
        if lowered in aliases:
            return channel
    known = ", ".join(("time",) + BEHAVIOR_CHANNELS)
    raise InputError(
        f"unknown behaviour column {name!r}; known columns are {known} (and aliases); map or ignore it with columns=",
        path,
    )


def _named_arrays(path: Path, columns_for_plain: list[str] | None) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        delimiter = "\t" if suffix == ".tsv" else ","
        try:
            table = np.genfromtxt(path, delimiter=delimiter, names=True, dtype=np.float64, encoding="utf-8")
        except ValueError as exc:
            raise InputError(f"not a readable table ({exc})", path) from None
        if table.dtype.names is None:
            raise InputError("table has no header row", path)
        table = np.atleast_1d(table)
        return {name: np.asarray(table[name], dtype=np.float64) for name in table.dtype.names}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {name: np.asarray(npz[name], dtype=np.float64) for name in npz.files}
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.dtype.names:
            return {name: np.asarray(array[name], dtype=np.float64) for name in array.dtype.names}
        if columns_for_plain is None:
            raise InputError("a plain .npy table needs column names (names=[...]); use CSV with a header instead", path)
        array = np.asarray(array, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != len(columns_for_plain):
            raise InputError(f"expected (samples, {len(columns_for_plain)}) for columns {columns_for_plain}, got {array.shape}", path)
        return {name: array[:, k] for k, name in enumerate(columns_for_plain)}
    raise InputError(f"unknown behaviour file type {suffix!r}; use .csv, .tsv, .npy or .npz", path)


def read_behaviour(path: str | Path, *, columns: dict | None = None, names: list[str] | None = None) -> BehaviourTable:
    """Read one behaviour table. ``columns`` maps file names to channel names (or ``None`` to skip)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    arrays = _named_arrays(path, names)
    times, channels = None, {}
    for name, values in arrays.items():
        canonical = _canonical(name, columns, path)
        if canonical is None:
            continue
        if canonical == "time":
            times = values
        elif canonical in channels:
            raise InputError(f"two columns map to channel {canonical!r}", path)
        else:
            channels[canonical] = values
    if times is None:
        raise InputError(f"no time column (one of {', '.join(TIME_ALIASES)})", path)
    if not channels:
        raise InputError("no behaviour channels besides time", path)
    require_finite(times, "timestamps", path)
    if times.size > 1 and np.any(np.diff(times) <= 0):
        raise InputError("timestamps are not strictly increasing", path)
    for name, values in channels.items():
        if values.shape != times.shape:
            raise InputError(f"channel {name!r} has {values.size} samples, time has {times.size}", path)
    return BehaviourTable(times, channels, path)
