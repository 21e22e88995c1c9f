"""Reconstruct: invert the trained ensemble on chosen trials, updating the movie layers live."""

from __future__ import annotations

import re

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, SpinBox

from . import _layers
from ._common import JobRunner, device_summary, job_buttons
from ._display import show_trials, trial_views
from ._session import session_for

MASK_READOUT = "from readout positions (fast)"
MASK_LEARNED = "learned (slow, the paper's)"
MASK_NONE = "none (whole frame)"
TIERS = ["test", "validation", "train", "trial ids…"]
_BATCH = re.compile(r"batch (\d+)/(\d+)")


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
    """Reconstruct the movies of some trials from their recorded activity."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.tier = ComboBox(label="trials", choices=TIERS, value="test")
        self.ids = LineEdit(label="trial ids", value="")
        self.max_trials = SpinBox(label="at most", value=4, min=1, max=1000)
        self.ensemble = SpinBox(label="models to use", value=3, min=1, max=64)
        self.iterations = SpinBox(label="iterations", value=200, min=1, max=100000)
        self.mask = ComboBox(label="transparency mask", choices=[MASK_READOUT, MASK_LEARNED, MASK_NONE], value=MASK_READOUT)
        self.early_stop = CheckBox(label="stop when the loss stops improving", value=True)
        self.blur = CheckBox(label="3D Gaussian blur (σ 0.5)", value=True)
        self.controls = CheckBox(label="run controls (shuffled, reversed, …)", value=False)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.device_label = Label(value="")
        self.models_label = Label(value="")
        self.summary = Label(value="")
        self.run_button, self.cancel_button, self.status = job_buttons("Reconstruct")
        self.runner = JobRunner("Reconstruct", self.run_button, self.cancel_button, self.status)
        self.extend([
            self.models_label, self.tier, self.ids, self.max_trials, self.ensemble, self.iterations, self.early_stop,
            self.mask, self.blur, self.controls, self.device, self.device_label, self.run_button, self.cancel_button,
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

    def config(self):
        from ..reconstruct import ReconstructionConfig

        return ReconstructionConfig(
            iterations=int(self.iterations.value),
            early_stopping=bool(self.early_stop.value),
            blur_sigma=0.5 if self.blur.value else None,
        )

    def run(self, *_):
        from ..errors import InputError
        from ._common import notify_error

        session = session_for(self.viewer)
        recording, models = session.get("recording"), list(session.get("models") or [])
        try:
            if recording is None:
                raise InputError("no recording yet: build one first ('Build recording' or 'Run all')")
            if not models:
                raise InputError("no trained models yet: train an encoder first ('Train encoder')")
            picks = pick_trials(recording, self.tier.value, self.ids.value, int(self.max_trials.value))
            trials = [recording.trial(i) for i in picks]
            config = self.config()
        except (InputError, ValueError) as exc:
            notify_error(exc, "Reconstruct")
            self.status.value = f"Reconstruct: {exc}"
            return
        models = models[: int(self.ensemble.value)]
        n_models = len(models)
        mask_mode, with_controls, device = self.mask.value, self.controls.value, self.device.value
        train_trials = [recording.trial(int(i)) for i in recording.indices("train")[:8]]

        # the layers exist from the start (grey) and fill in as the optimisation runs
        grey = [np.full_like(t.video, config.start_grey) for t in trials]
        layers = show_trials(self.viewer, trial_views(trials, grey, score=False), n_models=n_models)
        by_position = [layer for layer in layers if layer.metadata.get("kind") == _layers.RECONSTRUCTION]

        def make_job():
            return reconstruction_job(models, trials, config, mask_mode=mask_mode, controls=with_controls,
                                      device=device, train_trials=train_trials)

        def event(ev):
            if ev.preview is None or ev.stage != "reconstruction":
                return
            match = _BATCH.search(ev.message or "")
            start = (int(match.group(1)) - 1) * config.batch_size if match else 0
            for offset, movie in enumerate(np.asarray(ev.preview)):
                k = start + offset
                if k < len(by_position) and by_position[k] in self.viewer.layers:
                    by_position[k].data = movie

        def done(result):
            reconstruction, mask, table = result
            session.set("mask", mask)
            session.set("reconstruction", reconstruction)
            extra = {
                "reconstruction_config": reconstruction.config.to_dict(),
                "iterations_run": int(reconstruction.iterations_run),
                "device": reconstruction.device,
                "mask_method": getattr(mask, "method", "unknown"),
            }
            if table is not None:
                extra["controls"] = table.rows()
            views = trial_views(trials, reconstruction.movies, reconstruction.mask)
            show_trials(self.viewer, views, n_models=n_models, mask_alpha=reconstruction.mask, extra_metadata=extra,
                        reset_view=False)
            scores = [v.metrics.get("correlation", np.nan) for v in views]
            text = (
                f"mean masked correlation {np.nanmean(scores):.3f} over {len(views)} trial(s) "
                f"({reconstruction.iterations_run} iterations on {reconstruction.device})"
            )
            if table is not None:
                text += "; controls: " + ", ".join(f"{row.name} {row.mean:.2f}" for row in table.controls)
            self.summary.value = text
            self.status.value = "done"

        self.runner.start(make_job, done, on_event=event)


def reconstruction_job(models, trials, config, *, mask_mode=MASK_READOUT, controls=False, device=None, train_trials=()):
    """Mask, reconstruction and (optionally) controls as one job: returns ``(Reconstruction, mask, ControlTable|None)``."""
    from ..errors import InputError
    from ..progress import Progress
    from ..reconstruct import reconstruct
    from ..reconstruct.mask import TransparencyMask, learn_mask, mask_for_model

    frame_shape = tuple(models[0].frame_shape)
    if mask_mode == MASK_LEARNED:
        if not train_trials:
            raise InputError("learning a transparency mask needs training trials")
        mask = yield from learn_mask(models[0], list(train_trials), device=device)
    elif mask_mode == MASK_READOUT:
        mask = mask_for_model(models[0])
        yield Progress("mask", 1, 1, "estimated from the readout positions")
    else:
        mask = TransparencyMask.full(frame_shape)
    reconstruction = yield from reconstruct(models, trials, config, mask=mask, device=device)
    table = None
    if controls:
        from ..reconstruct.controls import run_controls

        table = yield from run_controls(models, trials, config, mask=mask, device=device)
    return reconstruction, mask, table
