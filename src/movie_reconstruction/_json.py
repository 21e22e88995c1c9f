"""JSON-ready values for configs, markers and provenance files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def jsonable(value):
    """Plain JSON types for numpy scalars/arrays and paths; non-finite floats become None
    (so a value read back compares equal to the one written)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
