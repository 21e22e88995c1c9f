"""Slow end-to-end widget runs: suite2p from the Extract widget, feeding Build recording; and
"Run all" from a session manifest to reconstruction layers and a report.

"Run all" on the demo's sample session is exercised by docs/make_screenshots.py and
benchmarks/demo_timing.py (a whole demo run is too long for CI on 2 cores); here it runs on
the tiny simulated session.

Same headless set-up as tests/test_widgets.py (imported from there: a private Xvfb for napari's
OpenGL canvas when there is no display).
"""

from __future__ import annotations

import numpy as np
import pytest

from test_widgets import PLUGIN, open_widget, tiny_session, viewer, wait_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


def test_extract_widget_runs_suite2p_and_feeds_build_recording(viewer, qtbot, tiny_session, tmp_path):  # noqa: F811
    import dask.array as da

    from movie_reconstruction._widgets.extract import FROM_FILES, FROM_FOLDER

    extract = open_widget(viewer, "Extract traces")
    assert extract.source.value == FROM_FILES
    extract.source.value = FROM_FOLDER  # the raw folder holds several TIFFs
    extract.path.value = tiny_session.path / "raw"
    extract.output.value = tmp_path / "extraction"
    extract.fs.value, extract.tau.value, extract.diameter.value = 30.0, 0.4, 7.5
    extract.cell_threshold.value = 0.0
    extract.small_fov.value = True
    extract.run_button.clicked.emit()
    wait_for(qtbot, extract, timeout=900_000)
    assert extract.status.value.startswith("done: plane 0:"), extract.status.value
    raw = viewer.layers["plane 0 · raw stack"]
    assert isinstance(raw.data, da.Array) and raw.data.shape == (tiny_session.n_imaging_frames, 64, 64)
    mean = viewer.layers["plane 0 · mean image"]
    rois = next(layer for layer in viewer.layers if layer.name.startswith("plane 0 · ROIs"))
    assert mean.data.shape == rois.data.shape == (64, 64)
    n_cells = int(rois.data.max())
    assert n_cells >= 5

    plot = open_widget(viewer, "Reconstruction plots")
    y, x = np.argwhere(rois.data == 1)[0]
    world = rois.data_to_world((y, x))
    assert rois.get_value(world, world=True) == 1  # what a click there picks
    plot.show_neuron(rois, 1)
    np.testing.assert_allclose(plot.axes[2].lines[0].get_ydata(), rois.metadata["spks"][0])

    build = open_widget(viewer, "Build recording")
    build.manifest.value = tiny_session.manifest
    build.results.value = tmp_path / "results"
    build.run_button.clicked.emit()
    wait_for(qtbot, build)
    assert f"4 trials (2 train, 1 validation, 1 test), {rois.metadata['spks'].shape[0]} neurons" in build.summary.value


def test_run_all_from_a_manifest_ends_in_aligned_layers_and_a_report(viewer, qtbot, tiny_session, tmp_path):  # noqa: F811
    from movie_reconstruction._widgets import _layers
    from movie_reconstruction._widgets.run_all import MANIFEST

    run_all = open_widget(viewer, "Run all")
    run_all.source.value = MANIFEST
    run_all.manifest.value = tiny_session.manifest
    run_all.results.value = tmp_path / "results"
    run_all.models.value, run_all.iterations.value = 1, 5
    run_all.controls.value = False  # the tiny session has one test trial: nothing to shuffle
    run_all.device.value = "cpu"
    run_all.run_button.clicked.emit()
    wait_for(qtbot, run_all, timeout=600_000)
    assert "results in" in run_all.summary.value, (run_all.status.value, run_all.summary.value)
    assert (tmp_path / "results" / "report.html").is_file()
    movies = [layer for layer in viewer.layers if layer.metadata.get("kind") == _layers.RECONSTRUCTION]
    stimuli = [layer for layer in viewer.layers if layer.metadata.get("kind") == _layers.STIMULUS]
    assert len(movies) == len(stimuli) == 1
    stimulus, reconstruction = stimuli[0], movies[0]
    n_frames = stimulus.data.shape[0]
    assert reconstruction.data.shape == stimulus.data.shape == (n_frames, 36, 64)
    frame_s = stimulus.scale[0]  # 1 / the frame rate measured from the session's timestamps
    assert frame_s == pytest.approx(1 / 30.0, rel=1e-3)
    for k in (0, n_frames // 2, n_frames - 1):  # frame k of both is at the same trial time, side by side
        t = k * frame_s
        assert stimulus.world_to_data((t, 5, 5))[0] == pytest.approx(k)
        assert reconstruction.world_to_data((t, 5, 5 + 64 + _layers.GAP)) == pytest.approx((k, 5, 5))
    assert np.isfinite(reconstruction.metadata["metrics"]["correlation"])
