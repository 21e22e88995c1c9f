"""What the widgets of one viewer share: the results folder every stage writes to (the same
folder layout the command line writes), and what the viewer holds in memory from it: the
traces, the recording, the trained models and the last reconstruction. Each stage's widget
reads the previous stage's result here."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

from psygnal import Signal


@dataclass(eq=False)
class _Store:
    traces: list | None = None  # list[Traces], one per plane
    raw_source: object = None  # what the traces were extracted from (path or array)
    recording: object = None  # Recording
    models: list = field(default_factory=list)  # encoders (their mask is the results folder's)
    reconstruction: object = None  # what the last reconstruction run returned (pipeline.Judged)
    results_folder: Path | None = None  # where the stages write (a results folder)
    recording_path: Path | None = None  # the recording's folder (results/recording, or a Sensorium folder)


class Session:
    """Per-viewer state with a ``changed(what)`` signal so widgets can refresh their summaries."""

    changed = Signal(str)

    def __init__(self):
        self.store = _Store()

    def set(self, what: str, value) -> None:
        setattr(self.store, what, value)
        if what == "recording":  # models trained on another recording no longer fit
            self.store.models, self.store.reconstruction = [], None
        self.changed.emit(what)

    def get(self, what: str):
        return getattr(self.store, what)


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_for(viewer) -> Session:
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = Session()
    return session


RESULTS_HOME = Path.home() / "movie-recon-results"


def default_results_folder(kind: str = "session") -> Path:
    import time

    return RESULTS_HOME / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def results_folder_to_write(session: Session, chosen=None) -> Path:
    """Where a stage writes: the chosen folder, else the session's, else a new one under
    ~/movie-recon-results (remembered, so the next stages write there too)."""
    if chosen is not None and str(chosen) not in ("", "."):
        folder = Path(chosen)
    else:
        folder = session.get("results_folder") or default_results_folder()
    if session.get("results_folder") != folder:
        session.set("results_folder", folder)
    return folder


def adopt_results_folder(session: Session, path) -> None:
    """Make a results folder the session's: its recording and trained models are loaded (cheap:
    the recording is read lazily, the models are small), so the widgets go on from it."""
    from ..errors import InputError
    from ..results import ResultsFolder
    from ..results_recording import open_recording, recording_path_of

    results = ResultsFolder.open(path)
    session.set("results_folder", Path(results.path))
    recording_path = recording_path_of(results)
    if not recording_path.exists():
        return
    session.set("recording", open_recording(recording_path))
    session.set("recording_path", recording_path)
    if results.checkpoints():
        from ..model import load_encoder

        try:
            session.set("models", [load_encoder(p, session.get("recording")) for p in results.checkpoints()])
        except InputError:  # models made for other data: the folder's recording is still usable
            session.set("models", [])


def adopt_shown_results_folder(viewer, path) -> None:
    """Make a results folder shown in ``viewer`` its session's, so the step widgets (Reconstruct)
    go on from it; a folder whose recording or models cannot be loaded stays shown, with a warning."""
    try:
        adopt_results_folder(session_for(viewer), path)
    except Exception as exc:  # noqa: BLE001 - the layers are shown; going on from here is optional
        from ._common import log

        log.warning("could not load the recording/models of %s: %s", path, exc)
