"""Run all as a good citizen, headless: a dock that keeps its width, no run into a folder nobody
chose, settings read from an opened results folder, Cancel within seconds from every stage,
and a viewer that closes mid-run without a thread left behind or an exception.

Same headless set-up as tests/test_widgets.py (imported from there: a private Xvfb for napari's
OpenGL canvas when there is no display).
"""

from __future__ import annotations

import threading
import time

import pytest

from test_widgets import notifications, open_widget, tiny_session, usable_viewer  # noqa: F401

CANCEL_SECONDS = 5.0  # the promise is 2 s; the margin is for a loaded CI machine


@pytest.fixture
def viewer(request, qapp):
    """napari's recommended fixture for plugin tests (a viewer without private access)."""
    return usable_viewer(request, qapp, "make_napari_viewer_proxy")


@pytest.fixture
def results_home(tmp_path, monkeypatch):
    from movie_reconstruction._widgets import _session, run_all

    home = tmp_path / "movie-recon-results"
    monkeypatch.setattr(run_all, "RESULTS_HOME", home)  # what the widget says
    monkeypatch.setattr(_session, "RESULTS_HOME", home)  # where new folders are made
    return home


def _cancel_within(qtbot, widget, seconds=CANCEL_SECONDS) -> float:
    worker = widget.runner.worker
    started = time.monotonic()
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=int(seconds * 1000))
    took = time.monotonic() - started
    assert widget.status.value == "Run all: cancelled", widget.status.value
    assert worker.stopped.wait(1.0), "the worker thread is still running after its job was cancelled"
    return took


def _wait_for_stage(qtbot, widget, prefix, timeout_s=600):
    def reached():
        assert widget.runner.running, f"the run ended before {prefix!r}: {widget.status.value} / {widget.summary.value}"
        return widget.status.value.startswith(prefix)

    qtbot.waitUntil(reached, timeout=timeout_s * 1000)


def test_dock_keeps_its_width_whatever_the_status_says(viewer, qtbot):
    run_all = open_widget(viewer, "Run all")
    viewer.window.show()
    qtbot.wait(50)
    native = run_all.native
    before = native.sizeHint().width(), native.minimumSizeHint().width(), native.width()
    long_path = "/home/researcher/" + "very-long-folder-name-" * 20 + "results"
    for label in (run_all.status, run_all.summary, run_all.destination, run_all.device_label):
        label.value = f"extract · registration · plane 0: {long_path} " + "tqdm " * 200
    qtbot.wait(50)
    after = native.sizeHint().width(), native.minimumSizeHint().width(), native.width()
    assert after == before
    assert native.width() < 800 and run_all.status.native.wordWrap()
    run_all.status.value = "train · model 1/2 · 40% · about 3 min left"
    qtbot.wait(50)
    assert native.width() == before[2]


def test_empty_fields_never_start_a_run_nobody_chose(viewer, qtbot, results_home):
    from movie_reconstruction._widgets.run_all import MANIFEST, SAMPLE

    run_all = open_widget(viewer, "Run all")
    assert "a new folder under" in run_all.destination.value and "asks first" in run_all.destination.value
    run_all.source.value = MANIFEST
    run_all.run_button.clicked.emit()
    assert not run_all.runner.running
    assert "choose a session manifest" in notifications()[-1]
    assert run_all.status.value.startswith("not started: choose a session manifest")

    run_all.source.value = SAMPLE
    run_all.run_button.clicked.emit()
    assert not run_all.runner.running  # the first press proposes a folder and says where
    proposed = run_all.results.value
    assert proposed.parent == results_home and proposed.name.startswith("demo-")
    assert not results_home.exists()
    assert "press Run all again" in run_all.status.value
    assert run_all.destination.value == f"writes to: {proposed}"
    qtbot.wait(200)
    assert "press Run all again" in run_all.status.value  # not overwritten


def test_defaults_follow_the_source_the_demo_or_the_pipeline(viewer):
    from movie_reconstruction._widgets.run_all import MANIFEST, SAMPLE
    from movie_reconstruction.pipeline import PipelineSettings

    run_all = open_widget(viewer, "Run all")
    quick, full, pipeline = PipelineSettings.demo(True), PipelineSettings.demo(False), PipelineSettings()
    assert run_all.quick.value and (run_all.models.value, run_all.iterations.value) == (quick.n_models, quick.reconstruction.iterations)
    run_all.quick.value = False
    assert (run_all.models.value, run_all.iterations.value) == (full.n_models, full.reconstruction.iterations)
    run_all.source.value = MANIFEST
    assert (run_all.models.value, run_all.iterations.value) == (pipeline.n_models, pipeline.reconstruction.iterations)
    run_all.source.value = SAMPLE
    assert (run_all.models.value, run_all.iterations.value) == (full.n_models, full.reconstruction.iterations)


def test_an_opened_results_folder_sets_the_settings_it_was_made_with(viewer, tmp_path):
    from movie_reconstruction._widgets.run_all import SAMPLE
    from movie_reconstruction.results import ResultsFolder

    folder = ResultsFolder.create(tmp_path / "results")
    folder.record("simulate", settings={"preset": "default"})
    folder.record("train", settings={"preset": "fast", "n_models": 3})
    folder.record("reconstruct", settings={"reconstruction": {"iterations": 77}})
    run_all = open_widget(viewer, "Run all")
    run_all.controls.value = True
    run_all.results.value = folder.path
    assert run_all.source.value == SAMPLE and run_all.quick.value is False
    assert (run_all.models.value, run_all.iterations.value, run_all.controls.value) == (3, 77, False)
    assert "resumes it" in run_all.destination.value


def test_a_results_folder_opened_in_the_viewer_is_the_one_run_all_goes_on_with(viewer, tmp_path):
    from test_widgets import PLUGIN, tiny_recording, write_results_folder

    run_all = open_widget(viewer, "Run all")
    folder = write_results_folder(tmp_path / "results", tiny_recording())
    viewer.open(str(folder), plugin=PLUGIN)
    assert run_all.results.value == folder
    assert run_all.destination.value.startswith(f"writes to: {folder}")
    other = write_results_folder(tmp_path / "other", tiny_recording())
    viewer.open(str(other), plugin=PLUGIN)
    assert run_all.results.value == folder  # a folder already chosen stays chosen


def test_cancel_stops_the_sample_run_within_seconds_and_the_log_holds_its_messages(viewer, qtbot, tmp_path):
    run_all = open_widget(viewer, "Run all")
    run_all.results.value = tmp_path / "results"
    run_all.quick.value = True
    run_all.run_button.clicked.emit()
    assert run_all.runner.running
    _wait_for_stage(qtbot, run_all, "simulate", timeout_s=120)
    assert _cancel_within(qtbot, run_all) < CANCEL_SECONDS
    assert "finished stages are kept" in run_all.summary.value
    assert run_all.log_view.native.isHidden()  # collapsed until asked for
    run_all.show_log.value = True
    assert not run_all.log_view.native.isHidden() and "simulate" in run_all.log_view.value


def _small(run_all, monkeypatch, **changes):
    """Keep the manifest runs small: the fast encoder, few epochs (sizes only)."""
    from movie_reconstruction.pipeline import with_changes

    widget_class = type(run_all)
    original = widget_class.__dict__["settings"]
    monkeypatch.setattr(widget_class, "settings", lambda self: with_changes(original(self), preset="fast", **changes))


def test_cancel_returns_within_seconds_from_extraction_training_and_reconstruction(
        viewer, qtbot, tiny_session, tmp_path, monkeypatch):  # noqa: F811
    from movie_reconstruction._widgets.run_all import MANIFEST

    run_all = open_widget(viewer, "Run all")
    run_all.source.value = MANIFEST
    run_all.manifest.value = tiny_session.manifest
    run_all.results.value = tmp_path / "results"
    run_all.models.value, run_all.iterations.value = 1, 100_000
    run_all.controls.value = False
    run_all.device.value = "cpu"
    _small(run_all, monkeypatch, max_epochs=1)
    took = {}
    run_all.run_button.clicked.emit()
    _wait_for_stage(qtbot, run_all, "extract · ")  # suite2p at work
    took["extract"] = _cancel_within(qtbot, run_all)

    run_all.run_button.clicked.emit()  # resumes: extraction's finished stages are kept
    _wait_for_stage(qtbot, run_all, "reconstruct · trial")
    qtbot.wait(500)
    _shows_the_finished_stages(viewer, run_all, tmp_path / "results")
    took["reconstruct"] = _cancel_within(qtbot, run_all)

    _small(run_all, monkeypatch, max_epochs=500)  # other training settings: the model is trained again
    run_all.run_button.clicked.emit()
    _wait_for_stage(qtbot, run_all, "train · model 1/1")
    qtbot.wait(500)
    took["train"] = _cancel_within(qtbot, run_all)
    print("cancel took (s):", {stage: round(seconds, 2) for stage, seconds in took.items()})
    assert all(seconds < CANCEL_SECONDS for seconds in took.values()), took


def _shows_the_finished_stages(viewer, run_all, folder):
    """Mid-run: the field of view extraction wrote, the training readout, the preview beside them."""
    from movie_reconstruction._widgets.run_all import LIVE_LAYER
    from movie_reconstruction.results import ResultsFolder

    cells = sum(ResultsFolder.open(folder).provenance()["stages"]["extract"]["cells"])
    mean, rois = viewer.layers["context · mean image"], viewer.layers[f"context · ROIs ({cells} cells)"]
    assert mean.visible and rois.visible and rois.data.max() == cells
    assert run_all.training.value.startswith("validation r per epoch:")
    assert "model 1/1: 0:" in run_all.training.value  # epoch 0's r, before any training step
    preview = viewer.layers[LIVE_LAYER]
    assert preview.translate[-1] + preview.data.shape[-1] <= mean.translate[-1]  # left of the field of view


def test_closing_the_viewer_mid_run_cancels_cleanly(viewer, qtbot, tmp_path, recwarn):
    from qtpy.QtCore import QThreadPool

    from movie_reconstruction.results import ResultsFolder

    run_all = open_widget(viewer, "Run all")
    run_all.results.value = tmp_path / "results"
    run_all.run_button.clicked.emit()
    _wait_for_stage(qtbot, run_all, "simulate", timeout_s=120)
    worker = run_all.runner.worker
    started = time.monotonic()
    viewer.close()
    assert worker.stopped.wait(CANCEL_SECONDS), "the job's thread outlived the viewer"
    assert time.monotonic() - started < CANCEL_SECONDS
    qtbot.wait(200)  # deliver the worker's last queued signals: they must not touch deleted widgets
    if (tmp_path / "results").exists():  # (a run cancelled this early removes the folder it made)
        with ResultsFolder.open(tmp_path / "results").lock():  # the run let go of it (FolderBusy otherwise)
            pass
    assert QThreadPool.globalInstance().waitForDone(2000)
    assert not [t for t in threading.enumerate() if t.name == "suite2p"]
    aborted = [w for w in recwarn.list if "aborted thread" in str(w.message)]
    assert not aborted, aborted
