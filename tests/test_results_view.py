"""The results view: what napari shows when a results folder is opened through the plugin's reader
(and what Run all's ``show_results_folder`` shows): the movies fitted to the canvas, stimulus |
reconstruction side by side with captions, time in seconds, contrast linked per trial, the mask
legend, the field of view as hidden context beside the grid, the difference view one click away,
and the plots panel with the verdict table, the neuron-count curve, "save figure" and "open report".

Same headless set-up as tests/test_widgets.py (imported from there: a private Xvfb for napari's
OpenGL canvas when there is no display).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from test_widgets import H, PLUGIN, W, tiny_recording, usable_viewer, write_results_folder

RATE = 30.0  # tiny_recording's frame rate


@pytest.fixture
def viewer(request, qapp):
    """napari's recommended fixture: a viewer that exposes only napari's public API."""
    return usable_viewer(request, qapp, "make_napari_viewer_proxy")


def _controls(folder) -> dict:
    from movie_reconstruction.results import ResultsFolder

    masked = {"measure": "masked", "verdict": "beaten", "p_value": 0.0039, "min_p": 0.002}
    return {
        "sources": {str(k): v for k, v in ResultsFolder.open(folder).trial_sources().items()},
        "rows": [
            {"condition": "real", "mean_r": 0.5, "margin": 0.0, "control/real": 1.0, "verdict": ""},
            {"condition": "shuffled", "mean_r": 0.05, "margin": 0.45, "control/real": 0.1, "verdict": "beaten"},
            {"condition": "grey-screen prior", "mean_r": 0.02, "margin": 0.48, "control/real": 0.04,
             "verdict": "cannot tell"},
        ],
        "verdicts": [
            {"control": "shuffled", "verdict": "beaten", "comparisons": [masked]},
            {"control": "grey-screen prior", "verdict": "cannot tell",
             "comparisons": [{**masked, "verdict": "cannot tell", "p_value": 0.25, "min_p": 0.25}]},
        ],
        "overall": "cannot tell",
        "overall_sentence": "cannot tell for grey-screen prior with 2 test trial(s)",
        "neuron_curve": [{"neurons": 6, "mean_r": 0.2}, {"neurons": 12, "mean_r": 0.35}, {"neurons": 24, "mean_r": 0.5}],
    }


@pytest.fixture
def results_folder(tmp_path):
    """A small results folder with controls, a neuron-count curve, a report and a 40x60 ROI map."""
    from movie_reconstruction.results import ResultsFolder

    folder = write_results_folder(tmp_path / "results", tiny_recording())
    results = ResultsFolder.open(folder)
    results.write_controls(_controls(folder))
    labels = np.zeros((40, 60), np.int32)
    labels[5:10, 5:10], labels[20:26, 30:36] = 1, 2
    plane = SimpleNamespace(plane=0, mean_image=np.random.default_rng(0).random((40, 60)), labels=lambda: labels)
    results.write_rois([plane])
    (folder / "report.html").write_text("<html><body>report</body></html>")
    return folder


def _movies(viewer, kind):
    return sorted((layer for layer in viewer.layers if layer.metadata.get("kind") == kind),
                  key=lambda layer: layer.metadata["trial_id"])


def _world_box(layer):
    """(top, left, bottom, right) of an image or labels layer's frame in world coordinates (pixel edges)."""
    top, left = np.asarray(layer.translate)[-2:]
    height, width = np.asarray(layer.data.shape[-2:]) * np.asarray(layer.scale)[-2:]
    return top, left, top + height, left + width


def _canvas_box(viewer):
    """(top, left, bottom, right) of the world region the canvas shows."""
    camera = viewer.scene.camera
    centre = np.asarray(camera.center)[-2:]
    half = np.asarray(viewer.canvas.size) / camera.zoom / 2
    return centre[0] - half[0], centre[1] - half[1], centre[0] + half[0], centre[1] + half[1]


def test_opening_a_results_folder_gives_the_labelled_fitted_side_by_side_view(viewer, qtbot, results_folder):
    from movie_reconstruction._widgets import _layers

    viewer.open(str(results_folder), plugin=PLUGIN)
    stimuli, reconstructions = _movies(viewer, _layers.STIMULUS), _movies(viewer, _layers.RECONSTRUCTION)
    assert [layer.name for layer in stimuli] == ["trial 4 · stimulus", "trial 5 · stimulus"]
    assert [layer.name for layer in reconstructions] == ["trial 4 · reconstruction", "trial 5 · reconstruction"]
    assert all(len(layer.name) <= 26 for layer in viewer.layers)  # short enough not to be elided

    # same scale, time in seconds; the pair side by side on one row, rows one under the other
    for stimulus, reconstruction in zip(stimuli, reconstructions, strict=True):
        assert tuple(stimulus.scale) == tuple(reconstruction.scale) == pytest.approx((1 / RATE, 1.0, 1.0))
        top, left, bottom, right = _world_box(stimulus)
        r_top, r_left, r_bottom, _ = _world_box(reconstruction)
        assert (r_top, r_bottom) == (top, bottom) and r_left == pytest.approx(right + _layers.GAP)
    assert _world_box(stimuli[1])[0] > _world_box(stimuli[0])[2]
    assert viewer.dims.axis_labels[0] == "time"
    assert viewer.dims.range[0].step == pytest.approx(1 / RATE)
    viewer.dims.set_point(0, 1.0)
    assert viewer.canvas.overlays.text.text == "t = 1.00 s · frame 30"

    # fitted to the movies: all of them inside the canvas, and they fill a good part of it
    view = _canvas_box(viewer)
    grid = np.array([_world_box(layer) for layer in stimuli + reconstructions])
    assert view[0] <= grid[:, 0].min() and view[1] <= grid[:, 1].min()
    assert view[2] >= grid[:, 2].max() and view[3] >= grid[:, 3].max()
    grid_size = np.array([grid[:, 2].max() - grid[:, 0].min(), grid[:, 3].max() - grid[:, 1].min()])
    assert max(grid_size / (np.array(view[2:]) - np.array(view[:2]))) > 0.6

    # captions on the canvas above each movie, and the mask's legend below the grid
    captions = viewer.layers["captions"]
    texts = list(captions.features["text"])
    assert texts == ["trial 4 · stimulus", "reconstruction · r = 0.50", "trial 5 · stimulus", "reconstruction · r = 0.50"]
    for (y, x), movie in zip(captions.data, [stimuli[0], reconstructions[0], stimuli[1], reconstructions[1]], strict=True):
        top, left = movie.translate[-2:]
        assert x == pytest.approx(left) and top - _layers.row_gap((H, W)) < y < top
    legend = viewer.layers["mask legend"]
    assert legend.visible and "red: evaluated" in " ".join(legend.features["text"])
    assert legend.data[0][0] > grid[:, 2].max()
    mask = viewer.layers["mask outline"]
    assert mask.colormap.map(np.array([1, 2]))[:, :3] == pytest.approx(np.array([[1.0, 0.23, 0.19], [0.3, 0.65, 1.0]]), abs=0.01)

    # the field of view: hidden context right of the grid, named apart from a suite2p folder's
    context = [layer for layer in viewer.layers if layer.name.startswith("context · ")]
    assert sorted(layer.name for layer in context) == ["context · ROIs (2 cells)", "context · mean image"]
    assert all(not layer.visible and _world_box(layer)[1] > grid[:, 3].max() + _layers.GAP for layer in context)
    qtbot.waitUntil(lambda: getattr(viewer.layers.selection.active, "name", None) == "trial 4 · reconstruction",
                    timeout=5_000)


def test_contrast_is_linked_within_each_trial(viewer, results_folder):
    from movie_reconstruction._widgets import _layers

    viewer.open(str(results_folder), plugin=PLUGIN)
    (stimulus_4, stimulus_5), (reconstruction_4, reconstruction_5) = (
        _movies(viewer, _layers.STIMULUS), _movies(viewer, _layers.RECONSTRUCTION))
    reconstruction_4.contrast_limits = (30.0, 180.0)
    assert tuple(stimulus_4.contrast_limits) == (30.0, 180.0)
    stimulus_5.contrast_limits = (10.0, 90.0)
    assert tuple(reconstruction_5.contrast_limits) == (10.0, 90.0)
    assert tuple(stimulus_4.contrast_limits) == (30.0, 180.0)  # per pair, not all movies


def test_the_difference_view_is_one_click_away(viewer, results_folder):
    from movie_reconstruction._widgets import _layers
    from movie_reconstruction._widgets._display import show_difference_view

    viewer.open(str(results_folder), plugin=PLUGIN)
    differences = _movies(viewer, _layers.DIFFERENCE)
    assert [layer.name for layer in differences] == ["trial 4 · difference", "trial 5 · difference"]
    assert not any(layer.visible for layer in differences)
    stimulus, reconstruction = _movies(viewer, _layers.STIMULUS)[0], _movies(viewer, _layers.RECONSTRUCTION)[0]
    np.testing.assert_allclose(differences[0].data, reconstruction.data - stimulus.data)
    assert tuple(differences[0].contrast_limits) == (-_layers._grid.DIFFERENCE_LIMIT, _layers._grid.DIFFERENCE_LIMIT)
    assert _world_box(differences[0])[1] == pytest.approx(_world_box(reconstruction)[3] + _layers.GAP)

    _dock, plot = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction plots")
    plot.difference_box.setChecked(True)  # the click
    assert all(layer.visible for layer in differences) and differences[0].colorbar.visible
    assert viewer.layers["captions · difference"].visible
    mask = viewer.layers["mask outline"]
    assert mask.data.shape[1] == _layers.grid_width((H, W), 3)  # the outline over the differences too
    view = _canvas_box(viewer)
    assert view[3] >= _world_box(differences[0])[3]  # refitted to show them
    show_difference_view(viewer, False)
    assert not any(layer.visible for layer in differences) and mask.data.shape[1] == _layers.grid_width((H, W), 2)


def test_plots_panel_shows_the_verdict_saves_the_figure_and_opens_the_report(viewer, results_folder, monkeypatch):
    import webbrowser

    viewer.open(str(results_folder), plugin=PLUGIN)
    _dock, plot = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction plots")  # opened already: found
    table = [[plot.table.item(i, j).text() for j in range(plot.table.columnCount())] for i in range(plot.table.rowCount())]
    assert table == [
        ["real", "0.500", "", "", ""],
        ["shuffled", "0.050", "0.10", "beaten", "0.0039"],
        ["grey-screen prior", "0.020", "0.04", "cannot tell", "≥ 0.25"],
    ]
    assert plot.verdict.text().startswith("Verdict: cannot tell (cannot tell for grey-screen prior")
    curve = plot.axes[3].lines[0]
    assert list(curve.get_xdata()) == [6, 12, 24] and list(curve.get_ydata()) == pytest.approx([0.2, 0.35, 0.5])

    saved = plot.save_figure()
    assert saved == results_folder / "figures" / "plots-trial-4.png"
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    assert plot.report_button.isEnabled()
    plot.report_button.click()
    assert opened == [(results_folder / "report.html").resolve().as_uri()]


def test_results_without_controls_say_so_and_without_a_report_disable_the_button(viewer, tmp_path):
    folder = write_results_folder(tmp_path / "results", tiny_recording())
    viewer.open(str(folder), plugin=PLUGIN)
    _dock, plot = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction plots")
    assert plot.table.rowCount() == 0 and "No controls" in plot.verdict.text()
    assert not plot.report_button.isEnabled()
    assert "no neuron-count curve" in plot.axes[3].get_title()


def test_run_all_shows_a_results_folder_as_the_same_view(viewer, results_folder):
    from movie_reconstruction._widgets import _layers
    from movie_reconstruction._widgets._display import present

    # what run_all.show_results_folder does, without loading the folder's models into the session
    from movie_reconstruction._widgets._common import add_or_replace
    from movie_reconstruction.results import load_results

    layers = [add_or_replace(viewer, t) for t in _layers.results_layers(load_results(results_folder))]
    present(viewer, layers)
    assert viewer.layers.selection.active.name == "trial 4 · reconstruction"
    assert list(viewer.layers["captions"].features["text"])[0] == "trial 4 · stimulus"
    _movies(viewer, _layers.STIMULUS)[1].contrast_limits = (5.0, 50.0)
    assert tuple(_movies(viewer, _layers.RECONSTRUCTION)[1].contrast_limits) == (5.0, 50.0)
    # opened again on top: the captions are rebuilt, not left with the old text
    present(viewer, [add_or_replace(viewer, t) for t in _layers.results_layers(load_results(results_folder))])
    assert len(viewer.layers["captions"].data) == 4 and "[1]" not in " ".join(layer.name for layer in viewer.layers)


def test_the_reader_gives_plain_layer_data_outside_napari(results_folder, monkeypatch):
    import sys

    from movie_reconstruction._napari_io import read_results_folder

    monkeypatch.delitem(sys.modules, "napari", raising=False)  # as in a script that never imported napari
    layers = read_results_folder(str(results_folder))(str(results_folder))
    assert all(isinstance(layer, tuple) and len(layer) == 3 for layer in layers)
    kinds = [meta["metadata"].get("kind") for _data, meta, _type in layers]
    assert kinds.count("stimulus") == kinds.count("reconstruction") == kinds.count("difference") == 2
    controls = next(meta for _d, meta, _t in layers if meta["metadata"].get("kind") == "reconstruction")["metadata"]["controls"]
    assert json.loads(json.dumps(controls["neuron_curve"]))[0]["neurons"] == 6
