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
