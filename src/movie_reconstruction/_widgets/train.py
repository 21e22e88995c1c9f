"""Train encoder: an ensemble of dynamic encoding models on the recording's train trials."""

from __future__ import annotations

import threading
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox

from ..model.config import PRESETS
from ._common import JobRunner, device_summary, job_buttons
from ._session import session_for

DEVICES = ["auto", "cpu", "cuda", "mps"]


class TrainEncoderWidget(Container):
    """Train ``ensemble size`` encoders (different seeds) with a live validation-correlation readout."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.preset = ComboBox(label="preset", choices=list(PRESETS), value="small",
                               tooltip="small: trains on a laptop CPU; fast: half the cost, less accurate; "
                                       "large: for a GPU")
        self.ensemble = SpinBox(label="ensemble size", value=3, min=1, max=16,
                                tooltip="the paper averages 7 models; 3 is a good start")
        self.device = ComboBox(label="device", choices=DEVICES, value="auto")
        self.device_label = Label(value="")
        self.epochs = SpinBox(label="max epochs", value=40, min=1, max=1000)
        self.minutes = FloatSpinBox(label="time budget per model (min)", value=0.0, min=0.0, max=10000.0, step=1.0,
                                    tooltip="0: no budget; training stops at max epochs or when it stops improving")
        self.init_core = ComboBox(label="start from", choices=self._core_choices)
        self.checkpoints = FileEdit(label="save checkpoints to", mode="d",
                                    tooltip="optional: each model is saved here (safetensors + JSON) when trained")
        self.readout = Label(value="")
        self.stop_button = PushButton(text="Stop early (keep best)")
        self.run_button, self.cancel_button, self.status = job_buttons("Train encoder")
        self.runner = JobRunner("Train encoder", self.run_button, self.cancel_button, self.status)
        self.extend([
            self.preset, self.ensemble, self.device, self.device_label, self.epochs, self.minutes, self.init_core,
            self.checkpoints, self.run_button, self.stop_button, self.cancel_button, self.status, self.readout,
        ])
        self._stop = threading.Event()
        self._base_training = None  # None: the chosen preset's training settings
        self.stop_button.enabled = False
        self.stop_button.changed.connect(lambda *_: self._stop.set())
        self.device.changed.connect(self._show_device)
        self.preset.changed.connect(self._preset_changed)
        self.run_button.changed.connect(self.run)
        self._show_device()

    @staticmethod
    def _core_choices(_widget=None):
        from ..model.pretrained import bundled_core_path

        choices = ["from scratch"]
        if bundled_core_path().exists():
            choices.append("bundled pretrained core")
        return choices

    def _show_device(self, *_):
        self.device_label.value = f"→ {device_summary(self.device.value)}"

    def _preset_changed(self, *_):
        from ..model.config import TrainConfig

        self._base_training = None
        self.epochs.value = TrainConfig.preset(self.preset.value).max_epochs

    def set_training_config(self, config) -> None:
        """Train with ``config`` (a :class:`~movie_reconstruction.model.TrainConfig`) instead of the
        preset's training settings, for scripts and tests that need, say, a few steps per epoch.
        The epochs and time-budget fields are set from it and still apply; choosing another
        preset goes back to that preset's settings."""
        self.epochs.value = config.max_epochs
        self.minutes.value = config.max_minutes or 0.0
        self._base_training = config

    def training_config(self):
        from ..model.config import TrainConfig

        base = self._base_training or TrainConfig.preset(self.preset.value)
        return base.replace(max_epochs=int(self.epochs.value), max_minutes=float(self.minutes.value) or None)

    def run(self, *_):
        from ..errors import InputError
        from ..model import train_ensemble

        session = session_for(self.viewer)
        recording = session.get("recording")
        preset, training, n_models = self.preset.value, self.training_config(), int(self.ensemble.value)
        device = self.device.value
        init_core = "bundled" if self.init_core.value == "bundled pretrained core" else None
        folder = None if str(self.checkpoints.value) in ("", ".") else Path(self.checkpoints.value)
        self._stop = threading.Event()
        stop = self._stop

        def make_job():
            if recording is None:
                raise InputError("no recording yet: build one first ('Build recording' or 'Run all')")
            return train_ensemble(recording, preset, training, n_models=n_models, device=device, init_core=init_core,
                                  stop=stop, checkpoint_dir=folder)

        def event(ev):
            m = ev.metrics
            if "val_corr" in m or "best_val_corr" in m:
                parts = [ev.stage]
                if "epoch" in m:
                    parts.append(f"epoch {int(m['epoch'])}")
                if "val_corr" in m:
                    parts.append(f"val corr {m['val_corr']:.3f}")
                if "best_val_corr" in m:
                    parts.append(f"best {m['best_val_corr']:.3f}")
                self.readout.value = " · ".join(parts)

        def done(results):
            self.stop_button.enabled = False
            if not results:
                self.status.value = "no model was trained"
                return
            session.set("training", results)
            session.set("models", [r.encoder for r in results])
            session.set("mask", None)
            best = ", ".join(f"{r.best_val_corr:.3f}" for r in results)
            self.status.value = f"{len(results)} model(s) trained on {results[0].device}"
            self.readout.value = f"best validation correlation per model: {best}"

        def cancelled():
            self.stop_button.enabled = False

        worker = self.runner.start(make_job, done, on_event=event, on_cancelled=cancelled)
        if worker is not None:
            self.stop_button.enabled = True
            worker.finished.connect(lambda: setattr(self.stop_button, "enabled", False))
