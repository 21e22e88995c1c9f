"""Build recording: align traces, stimulus and behaviour onto the stimulus frames."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label

from ._common import JobRunner, job_buttons
from ._display import show_fov, show_trials, trial_views
from ._session import session_for

MANIFEST = "session manifest"
SENSORIUM = "Sensorium folder"
FILES = "stimulus + timestamp files"
NWB = "NWB file"


def _given(value) -> Path | None:
    return None if value is None or str(value) in ("", ".") else Path(value)


class BuildRecordingWidget(Container):
    """Turn a session manifest, an NWB file, a Sensorium 2023 folder, or stimulus + timestamp files
    (with the extracted traces) into an aligned recording."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.mode = ComboBox(label="from", choices=[MANIFEST, NWB, SENSORIUM, FILES], value=MANIFEST)
        self.manifest = FileEdit(label="manifest (.toml)", mode="r", filter="*.toml")
        self.nwb = FileEdit(label="NWB file (.nwb)", mode="r", filter="*.nwb")
        self.folder = FileEdit(label="Sensorium folder", mode="d")
        self.movie = FileEdit(label="stimulus movie", mode="r")
        self.stimulus_times = FileEdit(label="stimulus frame times", mode="r")
        self.trials = FileEdit(label="trial table (.csv)", mode="r", filter="*.csv")
        self.imaging_times = FileEdit(label="imaging frame times", mode="r")
        self.behaviour = FileEdit(label="behaviour files", mode="rm")
        self.summary = Label(value="")
        self.run_button, self.cancel_button, self.status = job_buttons("Build recording")
        self.runner = JobRunner("Build recording", self.run_button, self.cancel_button, self.status)
        self.extend([
            self.mode, self.manifest, self.nwb, self.folder, self.movie, self.stimulus_times, self.trials,
            self.imaging_times, self.behaviour, self.run_button, self.cancel_button, self.status, self.summary,
        ])
        self.mode.changed.connect(self._mode_changed)
        self.run_button.changed.connect(self.run)
        self._mode_changed()

    def _mode_changed(self, *_):
        mode = self.mode.value
        self.manifest.visible = mode == MANIFEST
        self.nwb.visible = mode == NWB
        self.folder.visible = mode == SENSORIUM
        for widget in (self.movie, self.stimulus_times, self.trials, self.imaging_times, self.behaviour):
            widget.visible = mode == FILES

    def run(self, *_):
        mode = self.mode.value
        session = session_for(self.viewer)
        traces = session.get("traces")
        manifest_path = _given(self.manifest.value if mode != NWB else self.nwb.value)
        folder = _given(self.folder.value)
        files = {
            "movie": _given(self.movie.value),
            "stimulus_times": _given(self.stimulus_times.value),
            "trials": _given(self.trials.value),
            "imaging_times": _given(self.imaging_times.value),
            "behaviour": [Path(p) for p in (self.behaviour.value or ()) if _given(p)],
        }

        def make_job():
            return build_recording_job(mode, manifest_path=manifest_path, folder=folder, files=files, traces=traces)

        def done(result):
            recording, new_traces = result
            if new_traces is not None and traces is None:
                session.set("traces", new_traces)
                show_fov(self.viewer, new_traces)
            session.set("recording", recording)
            self.summary.value = describe(recording)
            self.status.value = "recording ready"
            test = recording.indices("test")
            picks = list(test[:4]) if len(test) else [0]
            show_trials(self.viewer, trial_views([recording.trial(int(k)) for k in picks]), n_models=0)

        self.runner.start(make_job, done)


def describe(recording) -> str:
    counts = ", ".join(f"{int((recording.tiers == t).sum())} {t}" for t in ("train", "validation", "test"))
    missing = recording.extra.get("missing_behaviour") if recording.extra else None
    text = (
        f"{len(recording)} trials ({counts}), {recording.n_neurons} neurons, "
        f"{recording.frame_rate:g} Hz, frames {recording.frame_shape[0]}×{recording.frame_shape[1]}"
    )
    if missing:
        text += f"; no recorded {', '.join(missing)} (zeros)"
    return text


def build_recording_job(mode: str, *, manifest_path=None, folder=None, files=None, traces=None):
    """A small job (runs in the worker thread): returns ``(recording, traces or None)``."""
    from ..align import recording_from_manifest
    from ..errors import InputError
    from ..progress import Progress

    if mode == NWB:
        return (yield from _nwb_job(manifest_path, traces))
    if mode == SENSORIUM:
        from ..io.sensorium import read_sensorium

        if folder is None:
            raise InputError("choose a Sensorium 2023 mouse folder")
        yield Progress("reading", 0, 1, str(folder))
        return read_sensorium(folder), None

    from ..io.manifest import SessionManifest, load_manifest

    if mode == MANIFEST:
        if manifest_path is None:
            raise InputError("choose a session manifest (.toml)")
        manifest = load_manifest(manifest_path)
    else:
        files = files or {}
        for key, what in (("movie", "a stimulus movie"), ("stimulus_times", "the stimulus frame times"),
                          ("trials", "a trial table"), ("imaging_times", "the imaging frame times")):
            if files.get(key) is None:
                raise InputError(f"choose {what}")
        manifest = SessionManifest(
            path=files["movie"],
            name=files["movie"].stem,
            raw=[],
            imaging_frame_times=files["imaging_times"],
            stimulus_movie=files["movie"],
            stimulus_frame_times=files["stimulus_times"],
            trials=files["trials"],
            behaviour_files=list(files.get("behaviour") or []),
        )
    new_traces = None
    if traces is None:
        if manifest.suite2p is None:
            raise InputError(
                "no traces yet: run 'Extract traces' first, or name an existing suite2p folder in the manifest "
                "([imaging] suite2p = ...)",
                manifest.path,
            )
        from ..io.suite2p_folder import read_suite2p_folder

        yield Progress("reading", 0, 2, f"suite2p folder {manifest.suite2p}")
        traces = new_traces = read_suite2p_folder(manifest.suite2p)
    yield Progress("aligning", 1, 2, "traces and behaviour onto stimulus frames")
    recording = recording_from_manifest(manifest, traces)
    return recording, new_traces


def _nwb_job(path, traces):
    """An NWB file's own ROI responses when it has them, else the traces extracted in this viewer."""
    from ..errors import InputError
    from ..io.nwb import read_nwb, recording_from_nwb
    from ..progress import Progress

    if path is None:
        raise InputError("choose an NWB file (.nwb)")
    yield Progress("reading", 0, 2, str(path))
    session = read_nwb(path)
    if not session.traces and traces is None:
        raise InputError("the NWB file holds no ROI responses: run 'Extract traces' on its raw frames first", path)
    yield Progress("aligning", 1, 2, "traces and behaviour onto stimulus frames")
    if session.traces:
        return recording_from_nwb(session), session.traces
    return recording_from_nwb(session, traces), None
