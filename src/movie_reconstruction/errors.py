"""One exception type for bad input, so the CLI and the widgets can show it as one clear line."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Input that cannot be used as given. The message names the file (if any) and the problem."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


def require_finite(array, what: str, path: str | Path | None = None) -> None:
    """Raise InputError if ``array`` holds NaN or inf, saying how many and where the first is."""
    import numpy as np

    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        raise InputError(
            f"{what} contains {bad.shape[0]} NaN/inf value(s), first at index {tuple(int(i) for i in bad[0])}",
            path,
        )


class RunWarning(UserWarning):
    """Something a user should know about a run that went on (the CLI shows it as one line)."""


class OutputError(InputError):
    """A place that cannot be written (read-only, not a folder, no space, no permission)."""

    @classmethod
    def from_os_error(cls, exc: OSError, path: str | Path | None = None) -> OutputError:
        reason = exc.strerror or type(exc).__name__
        return cls(f"cannot write here ({reason})", path if path is not None else exc.filename)


def check_writable(folder: str | Path) -> None:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (or, when it does
    not exist yet, in the nearest folder above it), before any work is done for nothing.

    The check creates and removes a small file: permission bits alone do not tell (root,
    read-only mounts, network file systems).
    """
    import os
    import tempfile

    folder = Path(folder)
    probe_in = folder
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if probe_in.exists() and not probe_in.is_dir():
        raise OutputError("cannot write here (a file is in the way where a folder is needed)", probe_in)
    try:
        fd, name = tempfile.mkstemp(prefix=".write-check-", dir=probe_in)
    except OSError as exc:
        raise OutputError.from_os_error(exc, folder) from None
    os.close(fd)
    os.unlink(name)
