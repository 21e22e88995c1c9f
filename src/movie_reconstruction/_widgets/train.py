"""Train encoder: an ensemble of dynamic encoding models on the recording's train trials."""

from __future__ import annotations

import threading

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox

from ..model.config import PRESETS
from ..settings import setting_infos, setting_infos_named
from ._common import JobRunner, device_summary, job_buttons
from ._job_status import member_words
from ._session import results_folder_to_write, session_for
from ._settings_form import SettingsForm

DEVICES = ["auto", "cpu", "cuda", "mps"]
# Train-stage settings this widget has fields of its own for; the stage's other advanced settings,
# and these run settings, make its advanced section (from the settings schema, so a new one shows up).
OWN_FIELDS = ("init_core",)
RUN_SETTINGS = ("loss", "seed", "threads")


def advanced_settings():
    """The settings of the advanced section: the train stage's advanced ones, then the run's."""
    stage = [info for info in setting_infos(("train",)) if info.advanced and info.name not in OWN_FIELDS]
    return stage + setting_infos_named(RUN_SETTINGS)


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
                                    tooltip="0: no budget; training stops at max epochs or when it stops improving. "
                                            "With the snapshots ensemble method: the whole run's budget")
        self.init_core = ComboBox(label="start from", choices=self._core_choices)
        self.advanced = SettingsForm(advanced_settings())
        self.readout = Label(value="")
        self.stop_button = PushButton(text="Stop early (keep best)")
        self.run_button, self.cancel_button, self.status = job_buttons("Train encoder")
        self.runner = JobRunner("Train encoder", self.run_button, self.cancel_button, self.status)
        self.extend([
            self.preset, self.ensemble, self.device, self.device_label, self.epochs, self.minutes, self.init_core,
            self.advanced, self.run_button, self.stop_button, self.cancel_button, self.status, self.readout,
        ])
        self._stop = threading.Event()
        self._base_training = None  # None: the chosen preset's training settings
        self.stop_button.enabled = False
        self.stop_button.changed.connect(lambda *_: self._stop.set())
        self.device.changed.connect(self._show_device)
        self.preset.changed.connect(self._preset_changed)
        self.run_button.changed.connect(self.run)
        session_for(napari_viewer).changed.connect(self._session_changed)
        self._show_device()

    @staticmethod
    def _core_choices(_widget=None):
        from ..model.pretrained import bundled_core_path

        choices = ["from scratch"]
        if bundled_core_path().exists():
            choices.append("bundled pretrained core")
        return choices

    def _session_changed(self, what: str) -> None:
        """A results folder made the session's (opened, or Run all's) sets the fields to the
        training settings it was made with, so training again there keeps its models."""
        folder = session_for(self.viewer).get("results_folder")
        if what != "results_folder" or folder is None or self.runner.running:
            return
        from ..results import ResultsFolder

        try:
            trained = ResultsFolder.open(folder).provenance().get("settings", {}).get("train", {})
        except Exception:  # noqa: BLE001 - a folder without provenance keeps the fields as they are
            return
        if trained.get("preset") in PRESETS:
            self.preset.value = trained["preset"]
        if trained.get("n_models"):
            self.ensemble.value = int(trained["n_models"])
        if trained.get("ensemble_method") in self.advanced.fields["ensemble_method"].choices:
            self.advanced.fields["ensemble_method"].value = trained["ensemble_method"]
        epochs = (trained.get("training") or {}).get("max_epochs")
        if epochs:
            self.epochs.value = int(epochs)

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
        from ..settings import training_config

        return training_config(self.settings())

    def settings(self):
        """The run's settings from the fields (the same :class:`PipelineSettings` the command line makes)."""
        from .._schema import nested_replace
        from ..settings import PipelineSettings

        changes = {
            "preset": self.preset.value, "n_models": int(self.ensemble.value), "device": self.device.value,
            "max_epochs": int(self.epochs.value), "max_minutes": float(self.minutes.value) or None,
            "init_core": "bundled" if self.init_core.value == "bundled pretrained core" else None,
            "training": self._base_training, **self.advanced.values(),
        }
        return nested_replace(PipelineSettings(), changes)

    def run(self, *_):
        from ..errors import InputError
        from ._common import notify_error

        session = session_for(self.viewer)
        recording_path, folder = session.get("recording_path"), session.get("results_folder")
        try:
            settings = self.settings()
        except (InputError, ValueError) as exc:
            notify_error(exc, "Train encoder")
            self.status.value = f"Train encoder: {exc}"
            return
        self._stop = threading.Event()
        stop = self._stop

        def make_job():
            if session.get("recording") is None or recording_path is None:
                raise InputError("no recording yet: build one first ('Build recording' or 'Run all')")
            return train_job(results_folder_to_write(session, folder), settings, recording_path, stop)

        def event(ev):
            m = ev.metrics
            if "val_corr" in m or "best_val_corr" in m:
                parts = [member_words(ev.context) if "member" in ev.context else ev.stage]
                if "epoch" in m:
                    parts.append(f"epoch {int(m['epoch'])}")
                if "val_corr" in m:
                    parts.append(f"val corr {m['val_corr']:.3f}")
                if "best_val_corr" in m:
                    parts.append(f"best {m['best_val_corr']:.3f}")
                self.readout.value = " · ".join(parts)

        def done(result):
            models, best, budget_lines = result
            self.stop_button.enabled = False
            if not models:
                self.status.value = "no model was trained"
                return
            session.set("models", models)
            self.status.value = f"{len(models)} model(s) trained on {device_summary(settings.device)}"
            self.readout.value = "\n".join(["best validation correlation per model: " + ", ".join(f"{b:.3f}" for b in best),
                                             *budget_lines])

        def cancelled():
            self.stop_button.enabled = False

        worker = self.runner.start(make_job, done, on_event=event, on_cancelled=cancelled)
        if worker is not None:
            self.stop_button.enabled = True
            worker.finished.connect(lambda: setattr(self.stop_button, "enabled", False))


def train_job(results_folder, settings, recording_path, stop=None):
    """The Train widget's job: ``train_stage`` into the results folder, as ``movie-recon train``
    runs it; returns the trained encoders (checked against the recording), their best
    validation correlations and the training report's lines (epochs run against planned, and a
    warning when the time budget starved a member)."""
    from ..model import load_encoder
    from ..model.budget import training_summary_lines
    from ..model.checkpoint import read_checkpoint_config
    from ..pipeline import train_stage
    from ..results import ResultsFolder
    from ..results_recording import open_recording

    with ResultsFolder.writing(results_folder, command=["napari", "Train encoder"]) as results:
        checkpoints = yield from train_stage(results, settings, recording_path=recording_path, stop=stop)
    recording = open_recording(recording_path)
    models = [load_encoder(p, recording) for p in checkpoints]
    best = [float(read_checkpoint_config(p).get("training_metrics", {}).get("best_val_corr", float("nan")))
            for p in checkpoints]
    return models, best, training_summary_lines(checkpoints)
