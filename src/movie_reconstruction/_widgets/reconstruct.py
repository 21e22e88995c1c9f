"""Reconstruct: invert the trained ensemble on chosen trials, updating the movie layers live."""

from __future__ import annotations

import re

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, SpinBox

from ..reconstruct.config import ReconstructionConfig
from ..settings import setting_infos
from . import _layers
from ._common import JobRunner, device_summary, job_buttons
from ._display import show_trials, trial_views
from ._session import session_for
from ._settings_form import SettingsForm

TIERS = ["test", "validation", "train", "trial ids…"]


def pick_trials(recording, tier: str, ids_text: str, limit: int) -> list[int]:
    """Positions of the trials to reconstruct: a tier's first ``limit`` trials, or listed trial ids."""
    from ..errors import InputError

    if tier == "trial ids…":
        try:
            wanted = [int(x) for x in re.split(r"[,\s]+", ids_text.strip()) if x]
        except ValueError:
            raise InputError(f"trial ids must be whole numbers separated by commas, got {ids_text!r}") from None
        if not wanted:
            raise InputError("list the trial ids to reconstruct, e.g. 3, 7, 12")
        ids = [int(i) for i in recording.trial_ids]
        missing = [w for w in wanted if w not in ids]
        if missing:
            raise InputError(f"trial id(s) {missing} are not in the recording (ids run {min(ids)}..{max(ids)})")
        return [ids.index(w) for w in wanted]
    picks = [int(i) for i in recording.indices(tier)[:limit]]
    if not picks:
        raise InputError(f"the recording has no {tier} trials")
    return picks


class ReconstructWidget(Container):
    """Reconstruct the movies of some trials from their recorded activity, with the ensemble the
    session's results folder holds (what ``movie-recon reconstruct`` runs, with the same settings)."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.tier = ComboBox(label="trials", choices=TIERS, value="test")
        self.ids = LineEdit(label="trial ids", value="")
        self.max_trials = SpinBox(label="at most", value=4, min=1, max=1000)
        defaults = ReconstructionConfig()
        self.iterations = SpinBox(label="iterations", value=defaults.iterations, min=1, max=100000)
        self.early_stop = CheckBox(label="stop when the loss stops improving", value=defaults.early_stopping)
        self.blur = CheckBox(label=f"3D Gaussian blur (σ {defaults.blur_sigma:g})", value=True)
        self.controls = CheckBox(label="run controls (shuffled, reversed, …) and judge them", value=False)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.device_label = Label(value="")
        main_fields = {"reconstruction.iterations", "reconstruction.early_stopping"}
        self.advanced = SettingsForm([i for i in setting_infos(("reconstruct", "controls"))
                                      if i.name not in main_fields | {"trials", "controls"}])
        self.models_label = Label(value="")
        self.summary = Label(value="")
        self.run_button, self.cancel_button, self.status = job_buttons("Reconstruct")
        self.runner = JobRunner("Reconstruct", self.run_button, self.cancel_button, self.status)
        self.extend([
            self.models_label, self.tier, self.ids, self.max_trials, self.iterations, self.early_stop, self.blur,
            self.controls, self.device, self.device_label, self.advanced, self.run_button, self.cancel_button,
            self.status, self.summary,
        ])
        self.tier.changed.connect(self._tier_changed)
        self.device.changed.connect(self._show_device)
        self.run_button.changed.connect(self.run)
        session_for(napari_viewer).changed.connect(self._session_changed)
        self._tier_changed()
        self._show_device()
        self._session_changed()

    def _tier_changed(self, *_):
        self.ids.visible = self.tier.value == "trial ids…"
        self.max_trials.visible = not self.ids.visible

    def _show_device(self, *_):
        self.device_label.value = f"→ {device_summary(self.device.value)}"

    def _session_changed(self, *_):
        models = session_for(self.viewer).get("models")
        self.models_label.value = f"{len(models)} trained model(s) ready" if models else "no trained models yet"

    def settings(self, trial_ids=None):
        """The run's settings from the fields (the same :class:`PipelineSettings` the command line makes)."""
        from .._schema import nested_replace
        from ..settings import PipelineSettings

        changes = {**self.advanced.values(), "reconstruction.iterations": int(self.iterations.value),
                   "reconstruction.early_stopping": bool(self.early_stop.value),
                   "controls": bool(self.controls.value), "device": self.device.value, "trials": trial_ids}
        if not self.blur.value:
            changes["reconstruction.blur_sigma"] = None
        return nested_replace(PipelineSettings(), changes)

    def run(self, *_):
        from ..errors import InputError
        from ._common import notify_error

        session = session_for(self.viewer)
        recording, models = session.get("recording"), list(session.get("models") or [])
        try:
            if recording is None:
                raise InputError("no recording yet: build one first ('Build recording' or 'Run all')")
            if not models or session.get("results_folder") is None:
                raise InputError("no trained models yet: train an encoder first ('Train encoder')")
            picks = pick_trials(recording, self.tier.value, self.ids.value, int(self.max_trials.value))
            trials = [recording.trial(i) for i in picks]
            settings = self.settings(tuple(int(t.trial_id) for t in trials))
        except (InputError, ValueError) as exc:
            notify_error(exc, "Reconstruct")
            self.status.value = f"Reconstruct: {exc}"
            return
        folder, recording_path, n_models = session.get("results_folder"), session.get("recording_path"), len(models)

        # the layers exist from the start (grey) and fill in as the optimisation runs
        grey = [np.full_like(t.video, settings.reconstruction.start_grey) for t in trials]
        layers = show_trials(self.viewer, trial_views(trials, grey, score=False), n_models=n_models)
        by_trial = {layer.metadata.get("trial_id"): layer for layer in layers
                    if layer.metadata.get("kind") == _layers.RECONSTRUCTION}

        def make_job():
            return reconstruct_job(folder, settings, recording_path)

        def event(ev):
            layer = by_trial.get(ev.context.get("trial_id"))
            if ev.preview is None or "control" in ev.context or "neurons" in ev.context or layer is None:
                return
            if layer in self.viewer.layers:
                layer.data = np.asarray(ev.preview)[0]

        def done(result):
            judged, movies, alpha, extra = result
            session.set("reconstruction", judged)
            if judged.controls is not None:
                extra["controls"] = judged.controls
            views = trial_views(trials, movies, alpha)
            show_trials(self.viewer, views, n_models=n_models, mask_alpha=alpha, extra_metadata=extra,
                        reset_view=False)
            scores = [v.metrics.get("correlation", np.nan) for v in views]
            text = f"mean masked correlation {np.nanmean(scores):.3f} over {len(views)} trial(s) (in {folder})"
            if judged.controls is not None:
                text += "; " + str(judged.controls.get("overall", "controls not judged"))
            elif judged.skipped_controls and self.controls.value:
                text += f"; {judged.skipped_controls}"
            self.summary.value = text
            self.status.value = "done"

        self.runner.start(make_job, done, on_event=event)


def reconstruct_job(results_folder, settings, recording_path=None):
    """The Reconstruct widget's job: ``reconstruct_and_judge`` on the results folder, as
    ``movie-recon reconstruct`` runs it; returns ``(Judged, movies, mask alpha, layer metadata)``."""
    from ..pipeline import reconstruct_and_judge
    from ..reconstruct.mask import load_mask
    from ..results import ResultsFolder

    with ResultsFolder.writing(results_folder, command=["napari", "Reconstruct"]) as results:
        judged = yield from reconstruct_and_judge(results, settings, recording_path=recording_path)
        done = [results.read_trial(tid) for tid in settings.trials if tid in judged.summary.correlations]
        mask = load_mask(results.mask_path)
    iterations = [max(t.info.get("iterations") or [0]) for t in done]
    extra = {"reconstruction_config": settings.reconstruction.to_dict(), "iterations_run": max(iterations, default=0),
             "mask_method": mask.method}
    return judged, [t.reconstruction for t in done], mask.alpha, extra
