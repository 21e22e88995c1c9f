"""The napari plugin, driven headless (QT_QPA_PLATFORM=offscreen) through napari's plugin manager.

Every widget runs on small data: layers appear with the right shapes and on one time axis,
Cancel stops a run mid-way, and bad input becomes a notification that leaves the viewer usable.

napari draws its canvas with OpenGL. Qt's offscreen platform gets an OpenGL context only
through an X server, so on a Linux machine without a display these tests start a private
Xvfb (Debian package ``xvfb``) before the first QApplication exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PLUGIN = "napari-movie-reconstruction"
WIDGETS = ["Run all", "Extract traces", "Build recording", "Train encoder", "Reconstruct", "Reconstruction plots"]


def _accepts_clients(display: str) -> bool:
    """Whether the X server answers (its socket appears before it accepts connections)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("X11")
    if name is None:
        return Path(f"/tmp/.X11-unix/X{display[1:]}").exists()
    xlib = ctypes.cdll.LoadLibrary(name)
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = xlib.XOpenDisplay(display.encode())
    if not handle:
        return False
    xlib.XCloseDisplay(handle)
    return True


def _start_private_xvfb() -> str | None:
    """Start Xvfb on a free display number and export DISPLAY; None when there is no Xvfb.

    A small shell watchdog stops the server once this process has exited (stopping it earlier,
    from atexit, would make Xlib abort the process with an I/O error while Qt still holds it).
    """
    if not sys.platform.startswith("linux") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return os.environ.get("DISPLAY")
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return None
    for number in range(90, 160):
        socket = Path(f"/tmp/.X11-unix/X{number}")
        if socket.exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        watchdog = (
            f"{xvfb} :{number} -screen 0 1600x1000x24 -nolisten tcp -noreset >/dev/null 2>&1 & x=$!; "
            f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 $x 2>/dev/null; do sleep 1; done; kill $x 2>/dev/null"
        )
        proc = subprocess.Popen(["sh", "-c", watchdog], start_new_session=True)
        for _ in range(200):
            if _accepts_clients(f":{number}") or proc.poll() is not None:
                break
            time.sleep(0.05)
        if _accepts_clients(f":{number}"):
            os.environ["DISPLAY"] = f":{number}"
            return os.environ["DISPLAY"]
    return None


DISPLAY = _start_private_xvfb()  # at import: before pytest-qt creates the QApplication

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")


def _require_gl():
    if sys.platform.startswith("linux") and not DISPLAY:
        message = "napari's canvas needs OpenGL: install Xvfb (Debian: apt-get install xvfb) or run under xvfb-run"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _warm_up_gl(qapp) -> bool:
    """Fill napari's once-per-process OpenGL capability cache with a context that is current.

    napari asks for the GL extensions when the first layer is added and caches the answer; on
    Qt's offscreen platform the canvas's context is not always current at that moment (the
    canvas is never shown), which fails now and then. Asking once up front, retrying, makes it
    deterministic.
    """
    from napari._vispy.utils import gl as napari_gl

    for _ in range(10):
        try:
            napari_gl.get_gl_extensions()
            napari_gl.get_max_texture_sizes()
            return True
        except AttributeError:  # glGetString returned None: no current context yet
            qapp.processEvents()
            time.sleep(0.2)
    return False


def usable_viewer(request, qapp, fixture: str = "make_napari_viewer"):
    """A viewer from napari's fixture ``fixture``, once OpenGL is known to work here."""
    _require_gl()
    if not _warm_up_gl(qapp):
        pytest.fail("OpenGL is not usable on this display (napari cannot draw layers)")
    # asked for only now: napari's fixture errors in its teardown when a test stops (skips) in setup
    return request.getfixturevalue(fixture)()


@pytest.fixture
def viewer(request, qapp):
    return usable_viewer(request, qapp)


def open_widget(viewer, name):
    """Open a widget the way a user does: through the plugin manager (Plugins menu)."""
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def wait_for(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)


def notifications():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


# ---------------------------------------------------------------------------------- small data
H, W, T = 18, 32, 45


def tiny_recording(seed=0, n_neurons=24, trials=(("train", 3), ("validation", 1), ("test", 2))):
    """Smooth random movies, and neurons with local receptive fields responding to them."""
    from scipy.ndimage import gaussian_filter

    from movie_reconstruction.recording import from_arrays

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    centres = np.column_stack([rng.uniform(3, H - 3, n_neurons), rng.uniform(4, W - 4, n_neurons)])
    rfs = np.exp(-((yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2) / 8.0)
    rfs *= rng.choice([-1.0, 1.0], n_neurons)[:, None, None]
    videos, responses, behaviour, tiers = [], [], [], []
    for tier, count in trials:
        for _ in range(count):
            movie = gaussian_filter(rng.standard_normal((T, H, W)), (1.5, 2, 2))
            movie = np.clip(128 + 60 * movie / movie.std(), 0, 255).astype(np.float32)
            drive = np.einsum("thw,nhw->nt", (movie - 128) / 64, rfs)
            rate = np.log1p(np.exp(1.5 * drive))
            videos.append(movie)
            responses.append(rng.poisson(rate).astype(np.float32))
            behaviour.append(np.abs(rng.standard_normal((4, T))).astype(np.float32))
            tiers.append(tier)
    return from_arrays(videos, responses, behaviour, frame_rate=30.0, tiers=tiers, name="tiny")


@pytest.fixture(scope="module")
def sensorium_folder(tmp_path_factory):
    from movie_reconstruction.io.sensorium import write_sensorium

    folder = tmp_path_factory.mktemp("widgets") / "mouse"
    write_sensorium(tiny_recording(), folder)
    return folder


TINY_TRAINING = dict(max_epochs=1, steps_per_epoch=2, clip_frames=30, batch_size=2)


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory, sensorium_folder):
    """A results folder with two tiny encoders trained for a few steps (the train stage the
    Train widget runs, run directly) on the Sensorium folder."""
    from movie_reconstruction._widgets._common import keep_triton_out_without_cuda
    from movie_reconstruction.model import TrainConfig
    from movie_reconstruction.pipeline import PipelineSettings, train_stage, with_changes
    from movie_reconstruction.progress import run
    from movie_reconstruction.results import ResultsFolder

    keep_triton_out_without_cuda()  # as the widgets do: torch's triton next to napari's GL driver crashes
    settings = with_changes(PipelineSettings(), n_models=2, device="cpu", training=TrainConfig(**TINY_TRAINING))
    folder = tmp_path_factory.mktemp("trained") / "results"
    with ResultsFolder.writing(folder) as results:
        run(train_stage(results, settings, recording_path=sensorium_folder))
    return folder


# ---------------------------------------------------------------------------------- the plugin
def test_plugin_contributes_every_widget_reader_writer_and_sample():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest(PLUGIN)
    contributions = manifest.contributions
    assert sorted(w.display_name for w in contributions.widgets) == sorted(WIDGETS)
    readers = {r.command.split(".")[-1] for r in contributions.readers}
    assert readers == {"read_results", "read_suite2p", "read_sensorium", "read_manifest", "read_nwb"}
    (writer,) = contributions.writers
    assert set(writer.filename_extensions) == {".tif", ".tiff", ".mp4"}
    assert [s.key for s in contributions.sample_data] == ["simulated_session"]


WIDGET_CLASSES = {
    "Run all": "movie_reconstruction._widgets.run_all.RunAllWidget",
    "Extract traces": "movie_reconstruction._widgets.extract.ExtractTracesWidget",
    "Build recording": "movie_reconstruction._widgets.recording.BuildRecordingWidget",
    "Train encoder": "movie_reconstruction._widgets.train.TrainEncoderWidget",
    "Reconstruct": "movie_reconstruction._widgets.reconstruct.ReconstructWidget",
    "Reconstruction plots": "movie_reconstruction._widgets.plot.ReconstructionPlot",
}


def test_every_widget_opens_from_the_plugins_menu(viewer):
    """Each Plugins-menu entry, when clicked, docks its own widget (the right class, once each)."""
    from napari._app_model import get_app_model

    assert sorted(WIDGET_CLASSES) == sorted(WIDGETS)
    app = get_app_model()
    commands = {str(c.title): c.id for c in (getattr(i, "command", i) for i in _menu_items(app, "napari/plugins"))
                if c.id.startswith(f"{PLUGIN}.")}
    assert sorted(commands) == sorted(WIDGETS), commands
    for name in WIDGETS:
        app.commands.execute_command(commands[name])  # what clicking the menu entry does
    docked = {key: widget for key, widget in viewer.window.dock_widgets.items() if key.endswith("(Movie Reconstruction)")}
    assert sorted(docked) == sorted(f"{name} (Movie Reconstruction)" for name in WIDGETS)
    for name in WIDGETS:
        widget = docked[f"{name} (Movie Reconstruction)"]
        assert f"{type(widget).__module__}.{type(widget).__qualname__}" == WIDGET_CLASSES[name], name
    assert len({id(w) for w in docked.values()}) == len(WIDGETS)


def _menu_items(app, menu_id):
    from app_model.types import SubmenuItem

    for item in app.menus.get_menu(menu_id):
        if isinstance(item, SubmenuItem):
            yield from _menu_items(app, item.submenu)
        else:
            yield item


# ---------------------------------------------------------------------------------- the chain
def build_from_sensorium(viewer, qtbot, folder, results):
    """The Build widget on a Sensorium folder, writing into ``results``; waits for it."""
    build = open_widget(viewer, "Build recording")
    build.mode.value = "Sensorium folder"
    build.folder.value = folder
    build.results.value = results
    build.run_button.clicked.emit()
    wait_for(qtbot, build)
    return build


def test_build_train_reconstruct_show_aligned_layers_and_metrics(viewer, qtbot, sensorium_folder, tmp_path):
    from movie_reconstruction._widgets import _layers
    from movie_reconstruction.model import TrainConfig

    build = build_from_sensorium(viewer, qtbot, sensorium_folder, tmp_path / "results")
    assert "6 trials (3 train, 1 validation, 2 test), 24 neurons" in build.summary.value
    assert "trial 4 · stimulus" in viewer.layers and "trial 5 · stimulus" in viewer.layers

    train = open_widget(viewer, "Train encoder")
    assert train.device_label.value.startswith("→ cpu")  # chosen automatically and shown
    train.ensemble.value = 2
    small = TrainConfig(**TINY_TRAINING)
    train.set_training_config(small)  # keep CI fast: a few steps per epoch
    assert train.epochs.value == 1 and train.training_config() == small
    train.run_button.clicked.emit()
    wait_for(qtbot, train)
    assert "2 model(s) trained" in train.status.value, train.status.value
    assert "best validation correlation per model" in train.readout.value

    recon = open_widget(viewer, "Reconstruct")
    assert recon.models_label.value == "2 trained model(s) ready"
    recon.iterations.value = 11
    recon.early_stop.value = False
    recon.run_button.clicked.emit()
    name = "trial 4 · reconstruction"
    assert name in viewer.layers  # created at once (grey), filled in as it runs
    wait_for(qtbot, recon)
    assert "mean masked correlation" in recon.summary.value, recon.status.value

    stimulus = viewer.layers["trial 4 · stimulus"]
    reconstruction = viewer.layers[name]
    assert stimulus.data.shape == reconstruction.data.shape == (T, H, W)
    # same time axis: frame k of both is at k / 30 s; side by side: same rows, reconstruction right of stimulus
    for k in (0, 17, T - 1):
        t = k / 30.0
        assert stimulus.world_to_data((t, 5, 5))[0] == pytest.approx(k)
        x_right = 5 + W + _layers.GAP
        assert reconstruction.world_to_data((t, 5, x_right)) == pytest.approx((k, 5, 5))
    assert tuple(stimulus.contrast_limits) == tuple(reconstruction.contrast_limits) == (0.0, 255.0)
    stimulus.contrast_limits = (20.0, 200.0)  # linked: the reconstruction follows
    assert tuple(reconstruction.contrast_limits) == (20.0, 200.0)
    meta = reconstruction.metadata
    assert meta["trial_id"] == 4 and meta["n_models"] == 2 and meta["iterations_run"] == 11
    assert np.isfinite(meta["metrics"]["correlation"]) and -1 <= meta["metrics"]["correlation"] <= 1
    assert meta["frame_correlation"].shape == (T,) and meta["population_activity"].shape == (T,)
    mask = [layer for layer in viewer.layers if layer.metadata.get("kind") == _layers.MASK]
    assert len(mask) == 1 and set(np.unique(mask[0].data)) <= {0, 1, 2} and mask[0].data.max() >= 1

    plot = open_widget(viewer, "Reconstruction plots")
    viewer.layers.selection.active = reconstruction
    plot.refresh()
    assert plot.trial_layer is reconstruction
    viewer.dims.set_point(0, 20 / 30.0)  # the cursor follows the time slider
    assert plot._cursors and all(line.get_xdata()[0] == pytest.approx(20 / 30.0, abs=1e-6) for line in plot._cursors)


def test_reconstruction_updates_live_and_cancel_stops_it_mid_run(viewer, qtbot, trained_folder, tmp_path):
    import shutil

    from movie_reconstruction._widgets._session import adopt_results_folder, session_for

    session = session_for(viewer)
    folder = tmp_path / "results"
    shutil.copytree(trained_folder, folder)
    adopt_results_folder(session, folder)
    recon = open_widget(viewer, "Reconstruct")
    recon.iterations.value = 100_000
    recon.early_stop.value = False
    recon.run_button.clicked.emit()
    live = viewer.layers["trial 4 · reconstruction"]
    assert float(np.ptp(live.data)) == 0.0  # starts grey
    # the movie changes while the job is still running (a preview every 10 steps)
    qtbot.waitUntil(lambda: float(np.ptp(live.data)) > 0, timeout=60_000)
    assert recon.runner.running and not recon.run_button.enabled and recon.cancel_button.enabled
    recon.cancel_button.clicked.emit()
    wait_for(qtbot, recon, timeout=30_000)
    assert recon.status.value == "Reconstruct: cancelled"
    assert session.get("reconstruction") is None
    assert recon.run_button.enabled and not recon.cancel_button.enabled
    # the viewer and the widget still work: a short run afterwards finishes
    recon.iterations.value = 3
    recon.run_button.clicked.emit()
    wait_for(qtbot, recon)
    assert session.get("reconstruction") is not None


def test_opening_a_results_folder_lets_reconstruct_go_on_from_it(viewer, qtbot, trained_folder, tmp_path):
    """File > Open Folder on a results folder makes it the session's: its recording and models
    are loaded and Reconstruct writes its trials into that folder."""
    import shutil
    from types import SimpleNamespace

    from movie_reconstruction._widgets._session import session_for
    from movie_reconstruction.results import ResultsFolder

    folder = tmp_path / "results"
    shutil.copytree(trained_folder, folder)
    labels = np.zeros((20, 30), np.int32)
    labels[5:10, 5:10] = 1
    plane = SimpleNamespace(plane=0, mean_image=np.ones((20, 30)), labels=lambda: labels)
    ResultsFolder.open(folder).write_rois([plane])  # something to show: the folder has no trials yet
    viewer.open(str(folder), plugin=PLUGIN)
    session = session_for(viewer)
    assert session.get("results_folder") == folder
    assert session.get("recording") is not None and len(session.get("models")) == 2
    recon = open_widget(viewer, "Reconstruct")
    recon.iterations.value = 3
    recon.max_trials.value = 1
    recon.controls.value = False
    recon.run_button.clicked.emit()
    wait_for(qtbot, recon)
    assert session.get("reconstruction") is not None
    assert ResultsFolder.open(folder).trial_sources()


def test_bad_input_is_a_notification_and_the_viewer_stays_usable(viewer, qtbot, tmp_path):
    recon = open_widget(viewer, "Reconstruct")
    recon.run_button.clicked.emit()
    assert any("no recording yet" in m for m in notifications())

    build = open_widget(viewer, "Build recording")
    build.manifest.value = tmp_path / "missing.toml"
    build.run_button.clicked.emit()
    wait_for(qtbot, build)
    assert any("missing.toml: manifest not found" in m for m in notifications()), notifications()[-3:]
    assert "failed" in build.status.value and build.run_button.enabled

    bad = tmp_path / "mouse"
    (bad / "meta" / "trials").mkdir(parents=True)
    build.mode.value = "Sensorium folder"
    build.folder.value = bad
    build.run_button.clicked.emit()
    wait_for(qtbot, build)
    assert any("tiers.npy is missing" in m for m in notifications())

    extract = open_widget(viewer, "Extract traces")
    extract.path.value = tmp_path / "nothing_here.tif"
    extract.output.value = tmp_path / "out"
    extract.run_button.clicked.emit()
    wait_for(qtbot, extract)
    assert any("nothing_here.tif" in m and "not found" in m for m in notifications())
    assert not (tmp_path / "out" / "suite2p").exists()

    viewer.add_image(np.zeros((4, 8, 8)), name="still works")
    assert "still works" in viewer.layers


def test_extract_widget_picks_a_file_or_a_folder(viewer):
    from movie_reconstruction._widgets.extract import FROM_FILES, FROM_FOLDER

    extract = open_widget(viewer, "Extract traces")
    assert "0 = from the file's metadata" in extract.fs.label
    extract.source.value = FROM_FOLDER
    assert not extract.path.native.isHidden() and extract.path.mode.value == "d" and extract.path.label == "folder"
    extract.source.value = FROM_FILES
    assert extract.path.mode.value == "r" and extract.path.label == "file"


def test_train_widget_takes_its_settings_from_the_session_folder(viewer, trained_folder):
    from movie_reconstruction._widgets._session import session_for

    train = open_widget(viewer, "Train encoder")
    assert (train.ensemble.value, train.epochs.value) == (3, 40)
    session_for(viewer).set("results_folder", trained_folder)  # as opening it or Run all does
    assert (train.preset.value, train.ensemble.value, train.epochs.value) == ("small", 2, TINY_TRAINING["max_epochs"])


def test_every_advanced_training_setting_is_a_field_of_the_train_widget(viewer):
    from movie_reconstruction.settings import setting_infos

    train = open_widget(viewer, "Train encoder")
    wanted = {info.name for info in setting_infos(("train",)) if info.advanced} - {"init_core"}  # "start from"
    assert wanted <= set(train.advanced.fields), sorted(wanted - set(train.advanced.fields))
    assert train.settings().ensemble_method == "independent"
    train.advanced.fields["ensemble_method"].value = "snapshots"
    assert train.settings().ensemble_method == "snapshots"


def test_train_widget_says_what_is_missing(viewer, qtbot):
    train = open_widget(viewer, "Train encoder")
    train.run_button.clicked.emit()
    wait_for(qtbot, train)
    assert any("no recording yet" in m for m in notifications())
    assert train.run_button.enabled


# ---------------------------------------------------------------------------------- readers, writer
def write_results_folder(path, recording, n_trials=2):
    """A small results folder written through the results module (no pipeline run)."""
    from movie_reconstruction.results import ResultsFolder

    results = ResultsFolder.create(path)
    rng = np.random.default_rng(1)
    for position in recording.indices("test")[:n_trials]:
        trial = recording.trial(int(position))
        movie = np.clip(trial.video * 0.5 + 64 + rng.normal(0, 5, trial.video.shape), 0, 255).astype(np.float32)
        results.write_trial(
            trial_id=trial.trial_id, tier=trial.tier, stimulus=trial.video, reconstruction=movie,
            member_movies=np.stack([movie, movie, movie]), correlation=0.5, ssim=0.3,
            frame_correlation=np.linspace(0, 1, trial.n_frames), population_activity=trial.responses.mean(0),
            identity="test", info={},
        )
    from movie_reconstruction.reconstruct.mask import TransparencyMask, save_mask

    alpha = np.zeros((H, W), np.float32)
    alpha[4:14, 6:26] = 1.0
    alpha[2:16, 3:29] = np.maximum(alpha[2:16, 3:29], 0.6)
    save_mask(TransparencyMask(alpha), results.mask_path)
    return results.path


def test_results_folder_reopens_as_the_same_layers_without_recomputing(viewer, tmp_path, monkeypatch):
    import movie_reconstruction.reconstruct.optimiser as optimiser

    folder = write_results_folder(tmp_path / "results", tiny_recording())
    monkeypatch.setattr(optimiser, "reconstruct", lambda *a, **k: pytest.fail("reopening must not recompute"))
    layers = viewer.open(str(folder), plugin=PLUGIN)
    names = [layer.name for layer in layers]
    assert "trial 4 · stimulus" in names and "trial 4 · reconstruction" in names
    assert "trial 5 · reconstruction" in names
    rec = viewer.layers["trial 4 · reconstruction"]
    assert rec.data.shape == (T, H, W) and rec.metadata["metrics"]["correlation"] == pytest.approx(0.5)
    assert rec.metadata["results_folder"] == str(folder)
    mask = [layer for layer in layers if layer.metadata.get("kind") == "mask"][0]
    assert set(np.unique(mask.data)) == {0, 1, 2}


def test_suite2p_folder_reader_shows_mean_image_and_clickable_rois(viewer, tmp_path):
    from test_suite2p_folder import write_plane

    write_plane(tmp_path / "suite2p" / "plane0")
    layers = viewer.open(str(tmp_path / "suite2p"), plugin=PLUGIN)
    names = [layer.name for layer in layers]
    assert names == ["plane 0 · mean image", "plane 0 · ROIs (2 cells)"]
    rois = viewer.layers["plane 0 · ROIs (2 cells)"]
    plot = open_widget(viewer, "Reconstruction plots")
    plot.show_neuron(rois, 2)  # what a click on ROI 2 does
    title = plot.axes[2].get_title()
    assert "ROI 2" in title
    np.testing.assert_allclose(plot.axes[2].lines[0].get_ydata(), rois.metadata["spks"][1])


def test_a_results_folders_own_suite2p_output_opens_with_the_cells_its_run_kept(tmp_path):
    """The run's suite2p folder (results/extraction/suite2p) opens with the cell threshold the run
    recorded (the demo's 0.0 keeps all 3 ROIs), not the default 0.5 (2 ROIs), and says so."""
    from test_suite2p_folder import write_plane

    from movie_reconstruction._napari_io import read_suite2p_output
    from movie_reconstruction.results import ResultsFolder

    with ResultsFolder.writing(tmp_path / "results") as results:
        results.record("extract", settings={"cell_threshold": 0.0})
    suite2p = tmp_path / "results" / "extraction" / "suite2p"
    write_plane(suite2p / "plane0", probs=(0.9, 0.2, 0.6))
    for opened in (suite2p, suite2p / "plane0", suite2p.parent):
        names = [meta["name"] for _d, meta, _t in read_suite2p_output(str(opened))(str(opened))]
        assert names == ["plane 0 · mean image", "plane 0 · ROIs (3 cells)"], opened
    layers = read_suite2p_output(str(suite2p))(str(suite2p))
    meta = layers[1][1]["metadata"]
    assert meta["cell_threshold"] == 0.0 and str(tmp_path / "results") in meta["cell_threshold_from"]
    # the same folder elsewhere: the default threshold, said so
    other = tmp_path / "elsewhere" / "suite2p"
    write_plane(other / "plane0", probs=(0.9, 0.2, 0.6))
    layers = read_suite2p_output(str(other))(str(other))
    assert layers[1][1]["name"] == "plane 0 · ROIs (2 cells)"
    assert layers[1][1]["metadata"]["cell_threshold"] == 0.5
    assert layers[1][1]["metadata"]["cell_threshold_from"] == "the default cell threshold"


def test_writer_exports_stimulus_and_reconstruction_side_by_side(tmp_path):
    import av
    import tifffile

    from movie_reconstruction._napari_io import write_side_by_side
    from movie_reconstruction._widgets import _layers

    stim = np.tile(np.linspace(0, 255, W, dtype=np.float32), (T, H, 1))
    rec = 255 - stim
    views = [_layers.TrialView(3, stim, 30.0, rec), _layers.TrialView(8, stim, 30.0, rec)]
    data = _layers.trial_layers(views, n_models=3)
    (tif,) = write_side_by_side(str(tmp_path / "export.tif"), data)
    frames = tifffile.imread(tif)
    assert frames.shape == (T, 2 * H + _layers.GAP, 2 * W + _layers.GAP)
    np.testing.assert_array_equal(frames[7, :H, :W], np.rint(stim[7]).astype(np.uint8))
    np.testing.assert_array_equal(frames[7, :H, W + _layers.GAP :], np.rint(rec[7]).astype(np.uint8))
    (mp4,) = write_side_by_side(str(tmp_path / "export.mp4"), data)
    with av.open(mp4) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="gray") for f in container.decode(stream)]
    assert len(decoded) == T
    assert decoded[0].shape[0] >= frames.shape[1] * 6 and decoded[0].shape[1] >= frames.shape[2] * 6
    with pytest.raises(Exception, match="stimulus and reconstruction"):
        write_side_by_side(str(tmp_path / "nothing.tif"), [(stim, {"name": "x", "metadata": {}}, "image")])


# ---------------------------------------------------------------------------------- sample, manifest
@pytest.fixture(scope="module")
def tiny_session(tmp_path_factory):
    from movie_reconstruction.simulate import SimulationConfig, simulate_session

    return simulate_session(tmp_path_factory.mktemp("sim") / "session", SimulationConfig.tiny(), seed=0)


def test_sample_session_comes_from_the_plugins_sample_menu(viewer):
    viewer.open_sample(PLUGIN, "simulated_session")
    names = [layer.name for layer in viewer.layers]
    assert names == ["raw two-photon (simulated)", "stimulus movie", "ROI ground truth"]
    raw = viewer.layers["raw two-photon (simulated)"]
    assert raw.data.ndim == 3 and raw.data.shape[1:] == (64, 64)


def test_manifest_reader_shows_the_raw_stack_lazily_and_the_stimulus(viewer, tiny_session):
    import dask.array as da

    layers = viewer.open(str(tiny_session.manifest), plugin=PLUGIN)
    raw, stimulus = layers
    assert raw.name == "plane 0 · raw stack" and isinstance(raw.data, da.Array)  # never loaded whole
    assert raw.data.shape == (tiny_session.n_imaging_frames, 64, 64)
    assert stimulus.data.shape == (tiny_session.n_stimulus_frames, 36, 64)
    # both on one clock in seconds: imaging and stimulus frames are 1/30 s apart
    assert raw.scale[0] == pytest.approx(1 / 30) and stimulus.scale[0] == pytest.approx(1 / 30)


# ---------------------------------------------------------------------------------- one pipeline
SAME_SETTINGS = """
n_models = 2
device = "cpu"
neuron_counts = [12]
control_variants = ["time-reversed"]
[training]
max_epochs = 1
steps_per_epoch = 2
clip_frames = 30
batch_size = 2
[reconstruction]
iterations = 8
early_stopping = false
learning_rate = 3.0
jitter = 1
"""


def _folder_results(folder):
    import json

    metrics = json.loads((folder / "metrics.json").read_text())
    controls = json.loads((folder / "controls.json").read_text())
    per_trial = {row["trial_id"]: (row["correlation"], row["ssim"]) for row in metrics["trials"]}
    return per_trial, {row["condition"]: row["mean_r"] for row in controls["rows"]}, controls["neuron_curve"]


def test_the_command_line_and_the_widgets_give_the_same_results(viewer, qtbot, sensorium_folder, tmp_path):
    """The same settings through ``movie-recon`` and through the widgets (headless): the same
    results folders, metrics and controls."""
    from movie_reconstruction._widgets._common import keep_triton_out_without_cuda
    from movie_reconstruction.cli import main
    from movie_reconstruction.model import TrainConfig

    keep_triton_out_without_cuda()  # as the widgets do: torch's triton next to napari's GL driver crashes
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(SAME_SETTINGS)
    cli = tmp_path / "cli"
    common = ["--settings", str(settings_file), "--scheduler", "none", "-q"]
    assert main(["train", str(cli), "--recording", str(sensorium_folder), *common]) == 0
    assert main(["reconstruct", str(cli), *common]) == 0

    build_from_sensorium(viewer, qtbot, sensorium_folder, tmp_path / "napari")
    train = open_widget(viewer, "Train encoder")
    train.ensemble.value, train.device.value = 2, "cpu"
    train.set_training_config(TrainConfig(**TINY_TRAINING))
    train.run_button.clicked.emit()
    wait_for(qtbot, train)
    recon = open_widget(viewer, "Reconstruct")
    recon.iterations.value, recon.early_stop.value, recon.controls.value, recon.device.value = 8, False, True, "cpu"
    fields = recon.advanced.fields
    fields["reconstruction.learning_rate"].value = 3.0
    fields["reconstruction.jitter"].value = 1
    fields["neuron_counts"].value = "12"
    fields["control_variants"].value = "time-reversed"
    recon.run_button.clicked.emit()
    wait_for(qtbot, recon)
    assert recon.status.value == "done", recon.status.value

    cli_trials, cli_controls, cli_curve = _folder_results(cli)
    napari_trials, napari_controls, napari_curve = _folder_results(tmp_path / "napari")
    assert sorted(cli_trials) == sorted(napari_trials) == [4, 5]
    for trial_id, (r, ssim) in cli_trials.items():
        assert napari_trials[trial_id] == pytest.approx((r, ssim), abs=1e-6)
    assert sorted(cli_controls) == sorted(napari_controls) == ["real", "shuffled", "time-reversed"]
    for name, mean_r in cli_controls.items():
        assert napari_controls[name] == pytest.approx(mean_r, abs=1e-6)
    assert [c["neurons"] for c in cli_curve] == [c["neurons"] for c in napari_curve] == [12, 24]
    assert [c["mean_r"] for c in napari_curve] == pytest.approx([c["mean_r"] for c in cli_curve], abs=1e-6)


def test_every_reconstruction_setting_is_a_field_of_the_reconstruct_widget(viewer):
    from movie_reconstruction.settings import setting_infos

    recon = open_widget(viewer, "Reconstruct")
    shown = set(recon.advanced.fields) | {"reconstruction.iterations", "reconstruction.early_stopping", "trials",
                                          "controls"}
    wanted = {info.name for info in setting_infos(("reconstruct", "controls"))}
    assert wanted <= shown, sorted(wanted - shown)
    recon.advanced.fields["reconstruction.optimizer"].value = "momentum"
    recon.advanced.fields["reconstruction.blur_sigma"].value = "none"
    assert recon.settings().reconstruction.optimizer == "momentum"
    assert recon.settings().reconstruction.blur_sigma is None
