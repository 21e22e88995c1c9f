"""Build recording: align traces, stimulus and behaviour onto the stimulus frames."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label

from ..settings import setting_infos, setting_infos_named
from ._common import JobRunner, job_buttons
from ._display import show_fov, show_trials, trial_views
from ._session import results_folder_to_write, session_for
from ._settings_form import SettingsForm

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
        self.results = FileEdit(label="results folder", mode="d",
                                tooltip="where the recording (a Sensorium folder is used where it is), the models and "
                                        "the reconstructions are written, in the layout `movie-recon` writes; "
                                        "empty: a new folder under ~/movie-recon-results")
        self.results_label = Label(value="")
        self.advanced = SettingsForm(setting_infos(("build",)) + setting_infos_named(("cell_threshold",)))
        self.summary = Label(value="")
        self.run_button, self.cancel_button, self.status = job_buttons("Build recording")
        self.runner = JobRunner("Build recording", self.run_button, self.cancel_button, self.status)
        self.extend([
            self.mode, self.manifest, self.nwb, self.folder, self.movie, self.stimulus_times, self.trials,
            self.imaging_times, self.behaviour, self.results, self.advanced, self.run_button, self.cancel_button,
            self.status, self.results_label, self.summary,
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

    def settings(self):
        from .._schema import nested_replace
        from ..settings import PipelineSettings

        return nested_replace(PipelineSettings(), self.advanced.values())

    def run(self, *_):
        mode = self.mode.value
        session = session_for(self.viewer)
        traces = session.get("traces")
        manifest_path = _given(self.manifest.value if mode != NWB else self.nwb.value)
        sensorium = _given(self.folder.value)
        files = {
            "movie": _given(self.movie.value),
            "stimulus_times": _given(self.stimulus_times.value),
            "trials": _given(self.trials.value),
            "imaging_times": _given(self.imaging_times.value),
            "behaviour": [Path(p) for p in (self.behaviour.value or ()) if _given(p)],
        }
        folder = results_folder_to_write(session, _given(self.results.value))
        self.results_label.value = f"results folder: {folder}"

        def make_job():
            settings = self.settings()
            return build_job(mode, results_folder=folder, manifest_path=manifest_path, sensorium=sensorium, files=files,
                             traces=traces, settings=settings)

        def done(result):
            recording, new_traces, recording_path = result
            if new_traces is not None and traces is None:
                session.set("traces", new_traces)
                show_fov(self.viewer, new_traces)
            session.set("recording", recording)
            session.set("recording_path", recording_path)
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


def build_job(mode: str, *, results_folder=None, manifest_path=None, sensorium=None, files=None, traces=None,
              settings=None):
    """The Build widget's job (runs in the worker thread): ``build_stage`` into the results folder,
    as ``movie-recon build`` runs it; a Sensorium folder is used where it is. Returns
    ``(recording, traces read for display or None, the recording's folder)``."""
    from ..errors import InputError
    from ..pipeline import build_stage
    from ..progress import Progress
    from ..results import ResultsFolder

    if mode == SENSORIUM:
        from ..io.sensorium import read_sensorium

        if sensorium is None:
            raise InputError("choose a Sensorium 2023 mouse folder")
        yield Progress("reading", 0, 1, str(sensorium))
        return read_sensorium(sensorium), None, Path(sensorium)
    manifest = _chosen_manifest(mode, manifest_path, files)
    with ResultsFolder.writing(results_folder, command=["napari", "Build recording", str(manifest_path or "files")]) as results:
        recording = yield from build_stage(results, manifest, traces, settings)
        return recording, _traces_to_show(mode, manifest, traces, settings), results.recording_dir


def _chosen_manifest(mode: str, manifest_path, files):
    """The manifest path (or NWB file) to build from, or a manifest made from the chosen files."""
    from ..errors import InputError
    from ..io.manifest import SessionManifest

    if mode == NWB:
        if manifest_path is None:
            raise InputError("choose an NWB file (.nwb)")
        return manifest_path
    if mode == MANIFEST:
        if manifest_path is None:
            raise InputError("choose a session manifest (.toml)")
        return manifest_path
    files = files or {}
    for key, what in (("movie", "a stimulus movie"), ("stimulus_times", "the stimulus frame times"),
                      ("trials", "a trial table"), ("imaging_times", "the imaging frame times")):
        if files.get(key) is None:
            raise InputError(f"choose {what}")
    return SessionManifest(
        path=files["movie"],
        name=files["movie"].stem,
        raw=[],
        imaging_frame_times=files["imaging_times"],
        stimulus_movie=files["movie"],
        stimulus_frame_times=files["stimulus_times"],
        trials=files["trials"],
        behaviour_files=list(files.get("behaviour") or []),
    )


def _traces_to_show(mode: str, manifest, traces, settings):
    """The traces the build read (an NWB file's ROIs, the manifest's suite2p folder), for the viewer."""
    if traces is not None:
        return None
    if mode == NWB:
        from ..io.nwb import read_nwb

        return read_nwb(manifest).traces or None
    from ..io.manifest import load_manifest
    from ..io.suite2p_folder import read_suite2p_folder

    loaded = manifest if mode == FILES else load_manifest(manifest)
    if loaded.suite2p is None:
        return None
    return read_suite2p_folder(loaded.suite2p, cell_threshold=settings.cell_threshold if settings else 0.5)
