"""What the widgets of one viewer share: the traces, the recording, the trained models, the
mask and the last reconstruction. Each stage's widget reads the previous stage's result here."""

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
    training: list = field(default_factory=list)  # list[TrainingResult]
    models: list = field(default_factory=list)  # encoders
    mask: object = None  # TransparencyMask
    reconstruction: object = None  # Reconstruction
    results_folder: Path | None = None


class Session:
    """Per-viewer state with a ``changed(what)`` signal so widgets can refresh their summaries."""

    changed = Signal(str)

    def __init__(self):
        self.store = _Store()

    def set(self, what: str, value) -> None:
        setattr(self.store, what, value)
        if what == "recording":  # models trained on another recording no longer fit
            self.store.models, self.store.training, self.store.mask, self.store.reconstruction = [], [], None, None
        self.changed.emit(what)

    def get(self, what: str):
        return getattr(self.store, what)


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_for(viewer) -> Session:
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = Session()
    return session
