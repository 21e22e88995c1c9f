"""Render screenshots of the real plugin after a run on the sample session into docs/images/.

    python docs/make_screenshots.py                       # runs "Run all" on the quick sample session
    python docs/make_screenshots.py --results FOLDER      # opens an existing results folder instead
    python docs/make_screenshots.py --mid-run-only        # only Run all caught mid-reconstruction

Running Run all, it first writes napari_run_all.png: the window mid-reconstruction, with the
live preview, the field of view and the training readout that appear as the stages finish. It
then writes napari_results_view.png (the window as a results folder opens), napari_difference_view.png
(the same with the difference view on), napari_side_by_side.png (the canvas alone) and
napari_widgets.png (the step-by-step widgets docked beside the result).

Everything goes through napari's plugin manager, as a user would: the "Run all" widget is
opened from the plugin's manifest and its Run button pressed (or the results folder is opened
with the plugin's reader). The window is rendered headless: without a DISPLAY the script
restarts itself under ``xvfb-run`` (Debian packages ``xvfb libxcb-cursor0 libxcb-icccm4
libxcb-keysyms1``), because Qt's offscreen platform leaves napari's OpenGL canvas black.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLUGIN = "napari-movie-reconstruction"
HERE = Path(__file__).resolve().parent


def _ensure_display() -> None:
    """Qt's offscreen platform draws the widgets but leaves napari's OpenGL canvas black in a
    window grab, so render on a virtual X display (Xvfb) with the normal xcb platform."""
    if os.environ.get("DISPLAY") or not sys.platform.startswith("linux"):
        return
    runner = shutil.which("xvfb-run")
    if runner is None:
        sys.exit(
            "napari's canvas needs an X display with OpenGL: install xvfb and Qt's xcb libraries "
            "(Debian: apt-get install xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1) or set DISPLAY"
        )
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    command = [runner, "-a", "-s", "-screen 0 1920x1200x24 -noreset", sys.executable, *sys.argv]
    sys.exit(subprocess.call(command, env=env))


def _wait(app, condition, timeout_s: float, what: str) -> None:
    started = time.monotonic()
    while not condition():
        app.processEvents()
        time.sleep(0.05)
        if time.monotonic() - started > timeout_s:
            sys.exit(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _save(viewer, path: Path, *, canvas_only: bool) -> None:
    import imageio.v3 as iio

    image = viewer.screenshot(canvas_only=canvas_only, flash=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, image)
    print(f"wrote {path} {image.shape[1]}x{image.shape[0]}")


def _settle(app, seconds: float = 1.0) -> None:
    """Let Qt lay the window out and napari redraw (a newly docked panel resizes the canvas)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        app.processEvents()
        time.sleep(0.05)


def _preview_moving(viewer) -> bool:
    """Whether Run all's live reconstruction preview is there and has left its grey start."""
    from movie_reconstruction._widgets.run_all import LIVE_LAYER

    if LIVE_LAYER not in viewer.layers:
        return False
    data = viewer.layers[LIVE_LAYER].data
    return float(data.max()) - float(data.min()) > 20


# long: one screenshot session in the order a user meets the views, each step waiting on the last
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, help="an existing results folder to open instead of running")
    parser.add_argument("--out", type=Path, default=HERE / "images", help="where the PNGs go (default docs/images)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run")
    parser.add_argument("--mid-run-only", action="store_true",
                        help="write only napari_run_all.png (Run all mid-reconstruction), then cancel the run")
    args = parser.parse_args(argv)
    _ensure_display()

    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from movie_reconstruction._widgets import _layers
    from movie_reconstruction._widgets._display import fit_to_movies

    viewer = napari.Viewer(title="napari · Movie Reconstruction")
    app = QApplication.instance()
    viewer.window.show() if hasattr(viewer.window, "show") else None
    viewer.window.resize(1800, 1150)  # after show: napari restores the last session's geometry on show

    _dock, plot = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruction plots")
    if args.results is None:
        _dock, run_all = viewer.window.add_plugin_dock_widget(PLUGIN, "Run all", tabify=True)
        folder = Path(tempfile.mkdtemp(prefix="movie-recon-screens-")) / "results"
        run_all.results.value = folder
        run_all.quick.value = True
        started = time.monotonic()
        run_all.run_button.clicked.emit()
        if not run_all.runner.running:  # an empty results field is filled in and asks for a second press
            run_all.run_button.clicked.emit()
        _wait(app, lambda: _preview_moving(viewer) or not run_all.runner.running, args.timeout, "the live preview")
        if run_all.runner.running:
            _settle(app, 2.0)
            _save(viewer, args.out / "napari_run_all.png", canvas_only=False)
        if args.mid_run_only:
            run_all.cancel_button.clicked.emit()
            _wait(app, lambda: not run_all.runner.running, 60, "the cancelled run to stop")
            viewer.close()
            return 0
        _wait(app, lambda: not run_all.runner.running, args.timeout, "Run all")
        print(f"Run all took {time.monotonic() - started:.0f} s: {run_all.summary.value}")
        if "results in" not in run_all.summary.value:
            sys.exit(f"the run did not finish: {run_all.status.value}")
    else:
        viewer.open(str(args.results), plugin=PLUGIN)

    movies = [layer for layer in viewer.layers if layer.metadata.get("kind") == _layers.RECONSTRUCTION]
    if not movies:
        sys.exit("no reconstruction layers to show")
    first = movies[0]
    n_frames = first.data.shape[0]
    rate = float(first.metadata.get("frame_rate") or 30.0)
    viewer.dims.set_point(0, (n_frames * 0.6) / rate)  # mid-trial, after the dropped first second
    viewer.layers.selection.active = first
    rois = [layer for layer in viewer.layers if layer.metadata.get("kind") == _layers.ROIS]
    if rois and rois[0].data.max() > 0:
        label = int(np.bincount(rois[0].data.ravel())[1:].argmax()) + 1  # the largest ROI
        plot.show_neuron(rois[0], label)
    plot.refresh()
    _settle(app)

    # 1. the results view as it opens: captioned movies fitted to the canvas, the plots panel
    fit_to_movies(viewer)
    _settle(app)
    _save(viewer, args.out / "napari_results_view.png", canvas_only=False)

    # 2. the difference view, one click away (the plots panel's check box)
    plot.difference_box.setChecked(True)
    _settle(app)
    _save(viewer, args.out / "napari_difference_view.png", canvas_only=False)
    plot.difference_box.setChecked(False)

    # the movies only: stimulus | reconstruction per trial, mask outline and legend, same frame
    _settle(app)
    _save(viewer, args.out / "napari_side_by_side.png", canvas_only=True)

    # 3. the step-by-step widgets, docked beside the result
    for name in ("Reconstruct", "Train encoder"):
        viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
    app.processEvents()
    _save(viewer, args.out / "napari_widgets.png", canvas_only=False)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
