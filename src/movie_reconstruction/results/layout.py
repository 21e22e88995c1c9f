"""The names of a results folder's files and folders, and how its JSON files are written and read."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .. import _atomic
from .._json import jsonable
from ..errors import InputError

FORMAT = "movie-reconstruction-results"
FORMAT_VERSION = 1
PROVENANCE = "provenance.json"
RECONSTRUCTIONS = "reconstructions"
MODELS = "models"
RECORDING = "recording"
EXTRACTION = "extraction"
SESSION = "session"
MASK = "mask.safetensors"
ROIS = "rois.npz"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
CONTROLS_JSON = "controls.json"
CONTROLS_CSV = "controls.csv"
CONTROL_MOVIES = "controls"
REPORT = "report.html"
TRIAL_JSON = "trial.json"


def write_json(path: Path, data) -> None:
    _atomic.write_text(path, json.dumps(jsonable(data), indent=1, allow_nan=False))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None


def parse_json(data: bytes, path: Path):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None


def utc_timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
