"""Putting core results into the viewer: the field of view with its ROIs, and the trials'
stimulus and reconstruction side by side on one time axis."""

from __future__ import annotations

import weakref

import numpy as np

from . import _layers
from ._common import add_or_replace, show_plot_dock


def show_fov(viewer, traces_list, raw_stacks=None) -> list:
    """Mean image and ROIs per plane, left of the movie grid (which starts at x = 0)."""
    origin_x = -_layers.fov_width(traces_list)
    layers = [add_or_replace(viewer, t) for t in _layers.fov_layers(traces_list, raw_stacks=raw_stacks, origin_x=origin_x)]
    show_plot_dock(viewer)
    return layers


def evaluation_drop(n_frames: int) -> int:
    """The paper drops the first 30 frames; very short clips (tests, previews) keep two thirds."""
    from ..reconstruct.metrics import DROP_FRAMES

    return min(DROP_FRAMES, n_frames // 3)


def trial_views(trials, movies=None, mask=None, *, score: bool = True) -> list[_layers.TrialView]:
    """TrialViews for ``trials`` (core ``Trial`` objects) and optional reconstructed ``movies``."""
    from ..errors import InputError
    from ..reconstruct.metrics import frame_correlation, masked_correlation, ssim

    views = []
    for k, trial in enumerate(trials):
        movie = None if movies is None else np.asarray(movies[k], np.float32)
        metrics, per_frame = {}, None
        if movie is not None and score:
            drop = evaluation_drop(trial.n_frames)
            metrics["drop_frames"] = drop
            metrics["correlation"] = masked_correlation(movie, trial.video, mask, drop_frames=drop)
            per_frame = frame_correlation(movie, trial.video, mask, drop_frames=drop)
            try:
                metrics["ssim"] = ssim(movie, trial.video, mask, drop_frames=drop)
            except InputError:  # a mask too small for SSIM's window
                metrics["ssim"] = float("nan")
        views.append(
            _layers.TrialView(
                trial_id=int(trial.trial_id),
                stimulus=np.asarray(trial.video, np.float32),
                frame_rate=float(trial.frame_rate),
                reconstruction=movie,
                tier=str(trial.tier),
                frame_correlation=per_frame,
                population_activity=_layers.population_activity(trial.responses),
                metrics=metrics,
            )
        )
    return views


def show_trials(viewer, views, *, n_models: int, mask_alpha=None, extra_metadata=None, reset_view: bool = True) -> list:
    """Add (or update) the grid of stimulus | reconstruction layers and link their contrast."""
    tuples = _layers.trial_layers(views, n_models=n_models, mask_alpha=mask_alpha, extra_metadata=extra_metadata)
    return present(viewer, [put_layer(viewer, t) for t in tuples], reset_view=reset_view)


def put_layer(viewer, layer_tuple):
    """:func:`add_or_replace`, except that a caption layer is made anew: its text is a features
    table that replacing the points alone would leave behind."""
    _data, kwargs, _layer_type = layer_tuple
    name = kwargs.get("name")
    if (kwargs.get("metadata") or {}).get("kind") == _layers.CAPTIONS and name in viewer.layers:
        viewer.layers.remove(name)
    return add_or_replace(viewer, layer_tuple)


def results_view(viewer, layer_tuples) -> list:
    """Put a results folder's layers into ``viewer`` and present them (as Run all does)."""
    return present(viewer, [put_layer(viewer, t) for t in layer_tuples])


def layers_presented_on_insert(viewer, layer_tuples) -> list:
    """napari layers made from ``layer_tuples``, to be returned by a reader: their contrast is
    linked per trial now, and once ``viewer`` has inserted the last of them (napari adds a
    reader's layers after it returns) they are presented: fitted, captioned, plots opened."""
    from napari.layers import Layer

    layers = [Layer.create(*t) for t in layer_tuples]
    _link_pairs(layers)
    if viewer is None or not layers:
        return layers
    waiting = {id(layer) for layer in layers}

    def inserted(event):
        waiting.discard(id(event.value))
        if not waiting:
            viewer.layers.events.inserted.disconnect(inserted)
            present(viewer, layers)
            # napari makes the inserted layer the active one just after this event: select the
            # first reconstruction once it is done (a hidden context layer was left active)
            QTimer.singleShot(0, lambda chosen=viewer.layers.selection.active: _select(viewer, chosen))

    from qtpy.QtCore import QTimer

    viewer.layers.events.inserted.connect(inserted)
    return layers


def _select(viewer, layer) -> None:
    if layer is not None and layer in viewer.layers:
        viewer.layers.selection.active = layer


def present(viewer, layers: list, *, reset_view: bool = True) -> list:
    """Link each trial's contrast, caption the grid, put time in seconds on the canvas, select the
    first reconstruction, fit the view to the movies and refresh the plot dock."""
    link_contrast(viewer)
    for layer in layers:
        if layer.metadata.get("kind") == _layers.CAPTIONS:
            _restore_caption_text(layer)
    if viewer.dims.ndim == 3:
        viewer.dims.axis_labels = _layers.MOVIE_AXES
        show_time(viewer)
    movies = [layer for layer in layers if layer.metadata.get("kind") == _layers.RECONSTRUCTION]
    if movies:
        viewer.layers.selection.active = movies[0]
    docked_before = _plot_docked(viewer)
    plot = show_plot_dock(viewer)
    if plot is not None and hasattr(plot, "refresh"):
        plot.refresh()
    if reset_view:
        fit_to_movies(viewer)
        if plot is not None and not docked_before:
            _refit_on_next_resize(viewer)
    return layers


def _plot_docked(viewer) -> bool:
    from ._common import PLOT_WIDGET

    docks = getattr(getattr(viewer, "window", None), "dock_widgets", {})
    return any(name.startswith(PLOT_WIDGET) for name in docks)


def _refit_on_next_resize(viewer) -> None:
    """A newly docked panel narrows the canvas only once Qt lays the window out again: fit then too."""

    def resized(_event=None):
        viewer.canvas.events.size.disconnect(resized)
        fit_to_movies(viewer)

    viewer.canvas.events.size.connect(resized)


def fit_to_movies(viewer) -> None:
    """Fit the view to the visible movies and their captions (not to the larger field of view)."""
    shown = [
        layer for layer in viewer.layers
        if layer.visible and layer.metadata.get("kind") in (*_MOVIES, _layers.DIFFERENCE, _layers.CAPTIONS)
    ]
    viewer.reset_view(layers=shown or None, margin=0.08)


def _restore_caption_text(layer) -> None:
    """Give a caption layer the text its metadata holds (a replaced layer's points keep the old table)."""
    import pandas as pd

    wanted = layer.metadata.get("features")
    if wanted is not None and list(layer.features.get("text", [])) != list(wanted["text"]):
        layer.features = pd.DataFrame(wanted)


_TIMED: weakref.WeakSet = weakref.WeakSet()


def show_time(viewer) -> None:
    """Show the time slider's position in seconds on the canvas (the slider itself counts frames)."""
    overlay = viewer.canvas.overlays.text
    overlay.position = "top_right"
    overlay.font_size = 11
    overlay.visible = True

    def update(event=None):
        movies = [layer for layer in viewer.layers if layer.metadata.get("kind") in _MOVIES]
        if not movies or viewer.dims.ndim != 3:
            overlay.text = ""
            return
        seconds = float(viewer.dims.point[0])
        overlay.text = f"t = {seconds:.2f} s · frame {int(viewer.dims.current_step[0])}"

    if viewer not in _TIMED:
        viewer.dims.events.current_step.connect(update)
        _TIMED.add(viewer)
    update()


_MOVIES = (_layers.STIMULUS, _layers.RECONSTRUCTION)


def link_contrast(viewer) -> None:
    """Each trial's stimulus and reconstruction share contrast limits: change one, the other follows."""
    _link_pairs(list(viewer.layers))


def _link_pairs(layers) -> None:
    from napari.experimental import link_layers

    pairs: dict[tuple, list] = {}
    for layer in layers:
        meta = layer.metadata
        if meta.get("kind") in _MOVIES and "trial_id" in meta:
            pairs.setdefault((meta.get("results_folder"), int(meta["trial_id"])), []).append(layer)
    for pair in pairs.values():
        if len(pair) > 1:
            link_layers(pair, ("contrast_limits",))  # links made before are kept, not doubled


def show_difference_view(viewer, visible: bool = True) -> None:
    """Show (or hide) each trial's difference movie (reconstruction minus stimulus) beside the
    pair, with its caption, its colour bar and the mask outline over it, and refit the view."""
    differences = [layer for layer in viewer.layers if layer.metadata.get("kind") == _layers.DIFFERENCE]
    for k, layer in enumerate(differences):
        layer.visible = visible
        layer.colorbar.visible = visible and k == 0  # one colour bar says it for all
    for layer in viewer.layers:
        meta = layer.metadata
        if meta.get("kind") == _layers.CAPTIONS and meta.get("view") == _layers.DIFFERENCE:
            layer.visible = visible
        elif meta.get("kind") == _layers.MASK and meta.get("n_rows"):
            layer.data = _layers.mask_grid(meta["alpha"], int(meta["n_rows"]), columns=3 if visible else 2)
    fit_to_movies(viewer)


def difference_view_shown(viewer) -> bool:
    return any(layer.visible for layer in viewer.layers if layer.metadata.get("kind") == _layers.DIFFERENCE)
