"""Run all: one button from a session manifest, or from the simulated sample session, to
reconstructions, through the same pipeline as ``movie-recon demo`` / ``movie-recon run``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, SpinBox

from ._common import JobRunner, add_or_replace, device_summary, job_buttons
from ._session import session_for

SAMPLE = "sample session (simulated)"
MANIFEST = "session manifest"
LIVE_LAYER = "reconstruction in progress"


def default_results_folder(kind: str) -> Path:
    return Path.home() / "movie-recon-results" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunAllWidget(Container):
    """Extract → build → train → reconstruct → controls → report, with the results shown as layers."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.source = ComboBox(label="from", choices=[SAMPLE, MANIFEST], value=SAMPLE)
        self.quick = CheckBox(label="quick (about two minutes on a laptop)", value=True)
        self.manifest = FileEdit(label="manifest (.toml)", mode="r", filter="*.toml")
        self.results = FileEdit(label="results folder", mode="d",
                                tooltip="empty: a new folder under ~/movie-recon-results; an existing results folder resumes")
        self.models = SpinBox(label="ensemble size", value=2, min=1, max=16)
        self.iterations = SpinBox(label="iterations", value=100, min=1, max=100000)
        self.controls = CheckBox(label="controls and neuron-count curve", value=True)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.device_label = Label(value="")
        self.summary = Label(value="")
        self.run_button, self.cancel_button, self.status = job_buttons("Run all")
        self.runner = JobRunner("Run all", self.run_button, self.cancel_button, self.status)
        self.extend([
            self.source, self.quick, self.manifest, self.results, self.models, self.iterations, self.controls,
            self.device, self.device_label, self.run_button, self.cancel_button, self.status, self.summary,
        ])
        self.source.changed.connect(self._source_changed)
        self.quick.changed.connect(self._quick_changed)
        self.device.changed.connect(self._show_device)
        self.run_button.changed.connect(self.run)
        self._source_changed()
        self._quick_changed()
        self._show_device()

    def _source_changed(self, *_):
        sample = self.source.value == SAMPLE
        self.quick.visible = sample
        self.manifest.visible = not sample

    def _quick_changed(self, *_):
        from ..pipeline import PipelineSettings

        demo = PipelineSettings.demo(bool(self.quick.value))
        self.models.value, self.iterations.value = demo.n_models, demo.reconstruction.iterations

    def _show_device(self, *_):
        self.device_label.value = f"→ {device_summary(self.device.value)}"

    def settings(self):
        from ..pipeline import PipelineSettings, with_changes

        base = PipelineSettings.demo(bool(self.quick.value)) if self.source.value == SAMPLE else PipelineSettings()
        return with_changes(base, n_models=int(self.models.value), iterations=int(self.iterations.value),
                            controls=bool(self.controls.value), device=self.device.value)

    def run(self, *_):
        from ..errors import InputError
        from ..pipeline import run_demo, run_session

        sample = self.source.value == SAMPLE
        given = str(self.results.value)
        folder = Path(given) if given not in ("", ".") else default_results_folder("demo" if sample else "session")
        manifest = None if str(self.manifest.value) in ("", ".") else Path(self.manifest.value)
        settings, quick = self.settings(), bool(self.quick.value)

        def make_job():
            if sample:
                return run_demo(folder, quick=quick, settings=settings, command=["napari", "Run all", "sample"])
            if manifest is None:
                raise InputError("choose a session manifest (.toml)")
            return run_session(manifest, folder, settings, command=["napari", "Run all", str(manifest)])

        def event(ev):
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
                 "metadata": {"kind": "preview", "what": what}},
                "image",
            ))

        def done(result):
            if LIVE_LAYER in self.viewer.layers:
                self.viewer.layers.remove(LIVE_LAYER)
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

        self.status.value = f"writing to {folder}"
        self.runner.start(make_job, done, on_event=event, on_cancelled=cancelled)


def show_results_folder(viewer, path) -> list:
    """Show a saved results folder (no recomputation) and make it the viewer's session, so the
    other widgets can go on from it (reconstruct more trials with the same models)."""
    from ..results import load_results
    from . import _layers
    from ._display import present

    results = load_results(path)
    layers = [add_or_replace(viewer, t) for t in _layers.results_layers(results)]
    _adopt(viewer, results)
    return present(viewer, layers)


def _adopt(viewer, results) -> None:
    """Load the folder's recording and models into the session (cheap: lazy recording, small models)."""
    session = session_for(viewer)
    session.set("results_folder", Path(results.path))
    recording_dir = Path(results.path) / "recording"
    try:
        if recording_dir.is_dir():
            from ..io.sensorium import read_sensorium

            session.set("recording", read_sensorium(recording_dir))
        if results.checkpoints and session.get("recording") is not None:
            from ..model import load_encoder

            session.set("models", [load_encoder(p) for p in results.checkpoints])
            if results.mask is not None:
                from ..reconstruct.mask import TransparencyMask

                session.set("mask", TransparencyMask(results.mask, method="results folder"))
    except Exception as exc:  # noqa: BLE001 - the layers are shown; going on from here is optional
        from ._common import log

        log.warning("could not load the recording/models of %s: %s", results.path, exc)
