"""Putting core results into the viewer: the field of view with its ROIs, and the trials'
stimulus and reconstruction side by side on one time axis."""

from __future__ import annotations

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
    return present(viewer, [add_or_replace(viewer, t) for t in tuples], reset_view=reset_view)


def present(viewer, layers: list, *, reset_view: bool = True) -> list:
    """Link the movies' contrast, label the time axis, select the first reconstruction and refresh the plot dock."""
    link_contrast(viewer)
    if viewer.dims.ndim == 3:
        viewer.dims.axis_labels = ("time (s)", "y", "x")
    movies = [layer for layer in layers if layer.metadata.get("kind") == _layers.RECONSTRUCTION]
    if movies:
        viewer.layers.selection.active = movies[0]
    if reset_view:
        viewer.reset_view()
    plot = show_plot_dock(viewer)
    if plot is not None and hasattr(plot, "refresh"):
        plot.refresh()
    return layers


def link_contrast(viewer) -> None:
    """Stimulus and reconstruction layers share contrast limits: changing one changes all."""
    movies = [
        layer
        for layer in viewer.layers
        if layer.metadata.get("kind") in (_layers.STIMULUS, _layers.RECONSTRUCTION)
    ]
    for layer in movies:
        if getattr(layer, "_movie_recon_linked", False):
            continue

        def follow(event, source=layer):
            limits = tuple(source.contrast_limits)
            for other in viewer.layers:
                if other is source or other.metadata.get("kind") not in (_layers.STIMULUS, _layers.RECONSTRUCTION):
                    continue
                if tuple(other.contrast_limits) != limits:
                    other.contrast_limits = limits

        layer.events.contrast_limits.connect(follow)
        layer._movie_recon_linked = True
