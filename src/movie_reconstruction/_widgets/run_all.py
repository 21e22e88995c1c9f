"""Run all: one button from a session manifest, or from the simulated sample session, to
reconstructions, through the same pipeline as ``movie-recon demo`` / ``movie-recon run``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, SpinBox, TextEdit

from . import _layers
from ._common import JobRunner, add_or_replace, device_summary, job_buttons, notify_error, wrapping_label
from ._run_live import TrainingReadout, preview_translate, show_extraction
from ._session import RESULTS_HOME, adopt_shown_results_folder, default_results_folder

SAMPLE = "sample session (simulated)"
MANIFEST = "session manifest"
LIVE_LAYER = "reconstruction in progress"


def _path_or_none(value) -> Path | None:
    text = str(value)
    return None if text in ("", ".") else Path(text)


def folder_settings(path: Path) -> dict:
    """What an existing results folder was made with (its provenance): the source, the quick
    preset, the ensemble size, the iterations and whether controls ran; {} for any other folder."""
    from ..errors import InputError
    from ..results import ResultsFolder

    try:
        provenance = ResultsFolder.open(path).provenance()
    except InputError:
        return {}
    settings = provenance.get("settings", {})
    found: dict = {}
    if "simulate" in settings:
        found["source"], found["quick"] = SAMPLE, settings["simulate"].get("preset") == "quick"
    else:
        manifests = [r["path"] for r in provenance.get("inputs", []) if r.get("role") == "manifest"]
        if manifests:
            found["source"], found["manifest"] = MANIFEST, Path(manifests[0])
    if "n_models" in settings.get("train", {}):
        found["models"] = int(settings["train"]["n_models"])
    if "iterations" in settings.get("reconstruct", {}).get("reconstruction", {}):
        found["iterations"] = int(settings["reconstruct"]["reconstruction"]["iterations"])
    if "reconstruct" in settings:
        found["controls"] = "controls" in settings
    return found


class RunAllWidget(Container):
    """Extract → build → train → reconstruct → controls → report, with the results shown as layers."""

    def __init__(self, napari_viewer):
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.source = ComboBox(label="from", choices=[SAMPLE, MANIFEST], value=SAMPLE)
        self.quick = CheckBox(label="quick run (about two minutes on a laptop)", value=True)
        self.manifest = FileEdit(label="manifest (.toml)", mode="r", filter="*.toml")
        self.results = FileEdit(label="results folder", mode="d",
                                tooltip="an existing results folder resumes, with the settings it was made with")
        self.destination = wrapping_label()
        self.models = SpinBox(label="ensemble size", value=2, min=1, max=16, tooltip="models trained and averaged")
        self.iterations = SpinBox(label="iterations per trial", value=100, min=1, max=100000)
        self.controls = CheckBox(label="controls and neuron-count curve", value=True)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.device_label = wrapping_label()
        self.summary = wrapping_label()
        self.training = wrapping_label()  # validation r per epoch per model while training
        self.show_log = CheckBox(label="show log (suite2p and every stage)", value=False)
        self.log_view = TextEdit(value="", visible=False)
        self.log_view.read_only = True
        self.log_view.native.setMaximumHeight(220)  # a window onto the log, not the whole dock
        self.run_button, self.cancel_button, self.status = job_buttons("Run all")
        self.runner = JobRunner("Run all", self.run_button, self.cancel_button, self.status, on_log=self._show_log)
        # the fields in a labelled form; the texts below it at the dock's full width
        form = Container(labels=True, widgets=[
            self.source, self.quick, self.manifest, self.results, self.models, self.iterations, self.controls,
            self.device,
        ])
        form.margins = (0, 0, 0, 0)
        self.extend([
            form, self.device_label, self.destination, self.run_button, self.cancel_button, self.status,
            self.training, self.summary, self.show_log, self.log_view,
        ])
        self.source.changed.connect(self._source_changed)
        self.quick.changed.connect(self._quick_changed)
        self.results.changed.connect(self._results_changed)
        self.device.changed.connect(self._show_device)
        self.show_log.changed.connect(self._show_log)
        self.run_button.changed.connect(self.run)
        napari_viewer.layers.events.inserted.connect(self._layer_added)
        self._source_changed()
        self._show_device()

    def _source_changed(self, *_):
        sample = self.source.value == SAMPLE
        self.quick.visible = sample
        self.manifest.visible = not sample
        self._quick_changed()
        self._show_destination()

    def _quick_changed(self, *_):
        """The ensemble and iterations of the chosen source's defaults: the demo's for the sample
        session (as ``movie-recon demo [--quick]``), the pipeline's for a manifest."""
        from ..pipeline import PipelineSettings

        sample = self.source.value == SAMPLE
        defaults = PipelineSettings.demo(bool(self.quick.value)) if sample else PipelineSettings()
        self.models.value, self.iterations.value = defaults.n_models, defaults.reconstruction.iterations

    def _results_changed(self, *_):
        """An existing results folder resumes: show the settings it was made with, so that a
        re-run does not retrain or re-reconstruct it by accident."""
        folder = _path_or_none(self.results.value)
        found = folder_settings(folder) if folder is not None and folder.is_dir() else {}
        if "source" in found:
            self.source.value = found["source"]
        if "quick" in found:
            self.quick.value = found["quick"]  # resets the ensemble and iterations to its demo's
        if "manifest" in found and _path_or_none(self.manifest.value) is None:
            self.manifest.value = found["manifest"]
        for name in ("models", "iterations", "controls"):
            if name in found:
                getattr(self, name).value = found[name]
        self._show_destination(resumes=bool(found))

    def _layer_added(self, event):
        """A results folder opened in the viewer becomes the folder Run all goes on with."""
        folder = getattr(event.value, "metadata", {}).get("results_folder")
        if folder and not self.runner.running and _path_or_none(self.results.value) is None:
            self.results.value = Path(folder)

    def _show_destination(self, resumes: bool = False):
        folder = _path_or_none(self.results.value)
        if folder is None:
            self.destination.value = (f"writes to: a new folder under {RESULTS_HOME} (Run all asks first); "
                                      "choose a folder to write elsewhere")
        elif resumes:
            self.destination.value = f"writes to: {folder} (resumes it: finished stages are kept)"
        else:
            self.destination.value = f"writes to: {folder}"

    def _show_device(self, *_):
        self.device_label.value = f"→ {device_summary(self.device.value)}"

    def _show_log(self, *_):
        self.log_view.visible = bool(self.show_log.value)
        if self.show_log.value:  # drawn only while shown: suite2p alone sends thousands of lines
            self.log_view.value = self.runner.log.text()
            bar = self.log_view.native.verticalScrollBar()
            bar.setValue(bar.maximum())  # follow the newest line

    def settings(self):
        from ..pipeline import PipelineSettings, with_changes

        base = PipelineSettings.demo(bool(self.quick.value)) if self.source.value == SAMPLE else PipelineSettings()
        return with_changes(base, n_models=int(self.models.value), iterations=int(self.iterations.value),
                            controls=bool(self.controls.value), device=self.device.value)

    def _checked_inputs(self) -> tuple[Path | None, Path | None]:
        """(manifest, results folder) to run with; InputError for a missing manifest."""
        from ..errors import InputError

        manifest = _path_or_none(self.manifest.value)
        if self.source.value == MANIFEST:
            if manifest is None:
                raise InputError("choose a session manifest (.toml) to run from")
            if not manifest.is_file():
                raise InputError("manifest not found", manifest)
        return manifest, _path_or_none(self.results.value)

    def run(self, *_):
        from ..errors import InputError
        from ..pipeline import run_demo, run_session

        if self.runner.running:
            return
        try:
            manifest, folder = self._checked_inputs()
        except InputError as exc:
            notify_error(exc, "Run all")
            self.status.value = f"not started: {exc}"
            return
        sample = self.source.value == SAMPLE
        if folder is None:
            # never a silent full run into a folder the researcher did not choose: propose one,
            # show it in the field, and start on the next press
            self.results.value = default_results_folder("demo" if sample else "session")
            self.status.value = "not started: press Run all again to write there, or choose another results folder"
            return
        settings, quick = self.settings(), bool(self.quick.value)

        def make_job():
            if sample:
                return run_demo(folder, quick=quick, settings=settings, command=["napari", "Run all", "sample"])
            return run_session(manifest, folder, settings, command=["napari", "Run all", str(manifest)])

        readout, shown_mid_run = TrainingReadout(), []

        def event(ev):
            if ev.context.get("stage_done") == "extract":
                shown_mid_run[:] = show_extraction(self.viewer, folder)
            if readout.add(ev):
                self.training.value = readout.text()
            if ev.preview is None:
                return
            preview = np.asarray(ev.preview)
            movie = preview[0] if preview.ndim == 4 else preview
            where = ev.context
            what = (f"trial {where['trial_id']}, model {where['member'] + 1}/{where['members']}"
                    if "trial_id" in where and "member" in where else ev.stage)
            rate = 30.0
            add_or_replace(self.viewer, (
                movie,
                {"name": LIVE_LAYER, "colormap": "gray", "contrast_limits": (0.0, 255.0), "scale": (1 / rate, 1, 1),
                 "translate": preview_translate(movie.shape), "axis_labels": _layers.MOVIE_AXES,
                 "metadata": {"kind": "preview", "what": what}},
                "image",
            ))

        def done(result):
            for layer in [LIVE_LAYER, *shown_mid_run]:  # the results view makes its own, hidden and placed
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            show_results_folder(self.viewer, result.results)
            text = f"results in {result.results}"
            if result.reconstruction is not None and result.reconstruction.correlations:
                mean = float(np.mean(list(result.reconstruction.correlations.values())))
                text += f" · mean masked correlation {mean:.3f} over {len(result.reconstruction.correlations)} trial(s)"
            if result.controls is not None:
                # the statistical verdict of evaluate (docs/reconstruction.md, "Verdicts")
                text += " · " + result.controls.get("overall", "controls not judged")
            if result.report is not None:
                text += f" · report {result.report}"
            self.summary.value = text
            self.status.value = "done"

        def cancelled():
            if LIVE_LAYER in self.viewer.layers:
                self.viewer.layers.remove(LIVE_LAYER)
            self.summary.value = f"cancelled; finished stages are kept in {folder} (run again to resume)"

        self.summary.value = self.training.value = ""
        self.runner.start(make_job, done, on_event=event, on_cancelled=cancelled)


def show_results_folder(viewer, path) -> list:
    """Show a saved results folder (no recomputation) and make it the viewer's session, so the
    other widgets can go on from it (reconstruct more trials with the same models)."""
    from ..results import load_results
    from ._display import present

    results = load_results(path)
    layers = [add_or_replace(viewer, t) for t in _layers.results_layers(results)]
    adopt_shown_results_folder(viewer, results.path)
    return present(viewer, layers)

