"""Frame timestamps read from a file (``.npy`` or a one-column text file); a leaf module.

Used by the session manifest (:mod:`.manifest`) and the DAQ timing (:mod:`.daq`), which need it
without importing each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


def read_times(path: Path) -> np.ndarray:
    """Timestamps (seconds) from ``.npy`` or a one-column text file."""
    if not path.exists():
        raise InputError("timestamp file not found", path)
    try:
        if path.suffix.lower() == ".npy":
            times = np.load(path, allow_pickle=False)
        else:
            times = np.loadtxt(path, delimiter=",", ndmin=1, comments="#", skiprows=_header_rows(path))
    except ValueError as exc:
        raise InputError(f"not readable as timestamps ({exc})", path) from None
    times = np.asarray(times, dtype=np.float64).squeeze()
    if times.ndim != 1:
        raise InputError(f"timestamps must be one column, got shape {times.shape}", path)
    if not np.isfinite(times).all():
        raise InputError("timestamps contain NaN or inf", path)
    if times.size > 1 and (np.diff(times) <= 0).any():
        raise InputError(f"timestamps are not strictly increasing (first at index {int(np.argmax(np.diff(times) <= 0))})", path)
    return times


def _header_rows(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        first = fh.readline().strip().split(",")[0]
    try:
        float(first)
        return 0
    except ValueError:
        return 1
