"""Slow end-to-end widget run: suite2p from the Extract widget, feeding Build recording.

"Run all" on the sample session is exercised by docs/make_screenshots.py (a whole demo run is
too long for CI on 2 cores).

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

    extract = open_widget(viewer, "Extract traces")
    assert extract.source.value == "files / folder"
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
    build.run_button.clicked.emit()
    wait_for(qtbot, build)
    assert f"4 trials (2 train, 1 validation, 1 test), {rois.metadata['spks'].shape[0]} neurons" in build.summary.value
