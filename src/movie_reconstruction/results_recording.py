"""The recording behind a results folder: which one its models were trained on, and opening it.

Its own small module so that the stages (:mod:`.pipeline`), the evaluation and the CLI can all
use it without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .results import ResultsFolder


def open_recording(path: str | Path):
    """The recording folder at ``path`` (a Sensorium-format folder, as ``movie-recon build`` writes)."""
    from .io.sensorium import read_sensorium

    path = Path(path)
    if not path.exists():
        raise InputError("recording folder not found (run `movie-recon build` first, or pass a Sensorium folder)", path)
    return read_sensorium(path)


def recording_path_of(results: ResultsFolder, recording_path=None) -> Path:
    """The recording a results folder's models were trained on: ``recording_path`` when given,
    else the one its training provenance names, else the folder's own recording."""
    if recording_path is not None:
        return Path(recording_path)
    trained_on = results.provenance().get("settings", {}).get("train", {}).get("recording")
    return Path(trained_on) if trained_on else results.recording_dir
