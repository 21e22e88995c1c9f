"""Layer data for the viewer, as plain ``(data, kwargs, layer_type)`` tuples (no napari import).

The same builders serve the widgets, the readers (a saved results folder, a suite2p folder)
and the writer, so a reconstruction looks the same however it got into the viewer.

Layout of a reconstruction: one row per trial, the stimulus on the left, its reconstruction
in the middle and their difference on the right (hidden until the difference view is on),
all ``(T, H, W)`` on the same time axis (seconds from the trial's start: frame ``k`` of each
is at ``k / frame_rate``). Rows are spaced to leave a line for each movie's caption. One 2-D
labels layer draws the transparency mask as an outline over every movie: label 1 (red) where
pixels are evaluated (alpha >= 1), label 2 (blue) where they are only updated (0.5 <= alpha < 1);
a caption layer below the grid says so. A results folder's mean image and ROIs sit right of
the grid, hidden: they are context, not the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _grid
from ._grid import (  # noqa: F401 - part of this module's interface
    GAP, grid_translate, grid_width, mask_grid, mask_layer, mask_outline_labels, row_gap,
)

STIMULUS = "stimulus"
RECONSTRUCTION = "reconstruction"
DIFFERENCE = _grid.DIFFERENCE
CAPTIONS = _grid.CAPTIONS
MASK = _grid.MASK
ROIS = "rois"
MEAN_IMAGE = "mean image"
RAW = "raw"
CONTRAST = (0.0, 255.0)  # stimulus and reconstruction share these limits: both are grey levels
MOVIE_AXES = ("time", "y", "x")  # the time axis is in seconds: its scale is 1 / frame rate


@dataclass
class TrialView:
    """What the viewer shows for one trial."""

    trial_id: int
    stimulus: np.ndarray  # (T, H, W) grey levels
    frame_rate: float
    reconstruction: np.ndarray | None = None  # (T, H, W) grey levels
    tier: str = "test"
    frame_correlation: np.ndarray | None = None  # (T,), NaN where not evaluated
    population_activity: np.ndarray | None = None  # (T,) mean recorded response over neurons
    metrics: dict = field(default_factory=dict)


def ensemble_label(n_models: int) -> str:
    return f"ensemble of {n_models}" if n_models != 1 else "1 model"


# Short names: napari's layer list elides long ones in the middle, which hid what told layers
# apart. The ensemble size lives in the metadata, the plots panel and the captions.
def stimulus_name(trial_id: int) -> str:
    return f"trial {trial_id} · stimulus"


def reconstruction_name(trial_id: int, n_models: int = 1) -> str:  # n_models: kept for callers
    return f"trial {trial_id} · reconstruction"


def difference_name(trial_id: int) -> str:
    return f"trial {trial_id} · difference"


def _movie_kwargs(name, frame_rate, translate_yx, pixel_scale, metadata, visible=True) -> dict:
    return {
        "name": name,
        "colormap": "gray",
        "contrast_limits": CONTRAST,
        "scale": (1.0 / frame_rate, pixel_scale, pixel_scale),
        "translate": (0.0, *translate_yx),
        "interpolation2d": "nearest",
        "axis_labels": MOVIE_AXES,
        "visible": visible,
        "metadata": metadata,
    }


def _trial_metadata(view: TrialView, n_models: int, extra_metadata: dict | None) -> dict:
    return {
        "trial_id": int(view.trial_id),
        "tier": view.tier,
        "frame_rate": float(view.frame_rate),
        "n_models": int(n_models),
        "metrics": dict(view.metrics),
        "frame_correlation": None if view.frame_correlation is None else np.asarray(view.frame_correlation),
        "population_activity": None if view.population_activity is None else np.asarray(view.population_activity),
        **(extra_metadata or {}),
    }


def _reconstruction_caption(view: TrialView) -> str:
    r = view.metrics.get("correlation")
    return f"reconstruction · r = {r:.2f}" if r is not None and np.isfinite(r) else "reconstruction"


def trial_layers(
    views: list[TrialView],
    *,
    n_models: int = 1,
    mask_alpha: np.ndarray | None = None,
    origin=(0.0, 0.0),
    pixel_scale: float = 1.0,
    extra_metadata: dict | None = None,
) -> list[tuple]:
    """Stimulus | reconstruction | difference (hidden) per trial (rows), the mask outline over
    them, each movie's caption above it, and the mask's legend below the grid."""
    movies, differences, captions, difference_captions = [], [], [], []
    frame_shape = None
    for row, view in enumerate(views):
        stimulus = np.asarray(view.stimulus, np.float32)
        frame_shape = stimulus.shape[1:]
        common = _trial_metadata(view, n_models, extra_metadata)

        def place(column, frame_shape=frame_shape, row=row):
            return grid_translate(row, column, frame_shape, origin=origin, pixel_scale=pixel_scale)

        def caption_at(column, text, frame_shape=frame_shape, row=row):
            y, x = place(column, frame_shape, row)
            return (y - 0.5 * pixel_scale, x, text, _grid.CAPTION_COLOUR)

        movies.append((stimulus, _movie_kwargs(stimulus_name(view.trial_id), view.frame_rate, place(0), pixel_scale,
                                               {**common, "kind": STIMULUS}), "image"))
        captions.append(caption_at(0, f"trial {view.trial_id} · stimulus"))
        if view.reconstruction is None:
            continue
        reconstruction = np.asarray(view.reconstruction, np.float32)
        if reconstruction.shape != stimulus.shape:
            raise ValueError(
                f"trial {view.trial_id}: reconstruction {reconstruction.shape} and stimulus {stimulus.shape} differ"
            )
        movies.append((reconstruction, _movie_kwargs(reconstruction_name(view.trial_id, n_models), view.frame_rate,
                                                     place(1), pixel_scale, {**common, "kind": RECONSTRUCTION}), "image"))
        captions.append(caption_at(1, _reconstruction_caption(view)))
        differences.append((_grid.difference_movie(stimulus, reconstruction),
                            _grid.difference_kwargs(difference_name(view.trial_id), view.frame_rate, place(2),
                                                      pixel_scale, common), "image"))
        difference_captions.append(caption_at(2, "difference"))
    layers = movies + differences
    if frame_shape is None:
        return layers
    if mask_alpha is not None:
        layers.append(mask_layer(mask_alpha, len(views), origin=origin, pixel_scale=pixel_scale))
    layers.append(_grid.caption_layer(captions, name="captions"))
    if differences:
        # the colours' legend a line above the first row's captions (text rises from its point)
        top, left = grid_translate(0, 0, frame_shape, origin=origin, pixel_scale=pixel_scale)
        difference_captions.append((top - row_gap(frame_shape) * pixel_scale, left, _grid.DIFFERENCE_LEGEND,
                                    _grid.CAPTION_COLOUR))
        layers.append(_grid.caption_layer(difference_captions, name="captions · difference", visible=False,
                                            metadata={"view": DIFFERENCE}))
    if mask_alpha is not None:
        bottom = grid_translate(len(views), 0, frame_shape, origin=origin, pixel_scale=pixel_scale)[0]
        layers.append(_grid.legend_layer(bottom - row_gap(frame_shape) * pixel_scale + GAP * pixel_scale / 2,
                                           origin[1]))
    return layers


def fov_width(traces_list) -> float:
    return float(sum(t.frame_shape[1] + GAP * 4 for t in traces_list))


def fov_layers(traces_list, *, raw_stacks=None, origin_x: float = 0.0, context: bool = False) -> list[tuple]:
    """Per plane: the mean image and the ROI labels (with each ROI's trace in the metadata),
    and the raw movie if given (lazy: a dask array is passed through untouched). Planes sit
    side by side from ``origin_x``.

    ``context``: the field of view beside a results view: hidden, and named apart from the
    same planes opened from a suite2p folder (so neither gets napari's "[1]" suffix).
    """
    layers = []
    x_offset = float(origin_x)
    for k, traces in enumerate(traces_list):
        plane = int(getattr(traces, "plane", k))
        prefix = ("context · " + (f"plane {plane} " if len(traces_list) > 1 else "")) if context else f"plane {plane} · "
        translate = (0.0, x_offset)
        if raw_stacks is not None and k < len(raw_stacks) and raw_stacks[k] is not None:
            layers.append(raw_layer(raw_stacks[k], traces.frame_rate, plane, translate=translate))
        mean = np.asarray(traces.mean_image, np.float32)
        low, high = np.percentile(mean, [1, 99.5]) if mean.size else (0.0, 1.0)
        layers.append(
            (
                mean,
                {
                    "name": f"{prefix}mean image",
                    "colormap": "gray",
                    "contrast_limits": (float(low), float(max(high, low + 1e-6))),
                    "translate": translate,
                    "visible": not context,
                    "metadata": {"kind": MEAN_IMAGE, "plane": plane, "source": traces.source},
                },
                "image",
            )
        )
        layers.append(
            (
                traces.labels(),
                {
                    "name": f"{prefix}ROIs ({traces.n_cells} cells)",
                    "opacity": 0.45,
                    "translate": translate,
                    "visible": not context,
                    "metadata": {
                        "kind": ROIS,
                        "plane": plane,
                        "spks": np.asarray(traces.spks, np.float32),
                        "F": np.asarray(traces.F, np.float32),
                        "frame_rate": float(traces.frame_rate),
                        "roi_index": np.asarray(traces.roi_index),
                        "cell_probability": np.asarray(traces.cell_probability),
                        "source": traces.source,
                    },
                },
                "labels",
            )
        )
        x_offset += traces.frame_shape[1] + GAP * 4
    return layers


def raw_layer(movie, frame_rate: float | None, plane: int = 0, *, translate=(0.0, 0.0)) -> tuple:
    """The raw movie ``(frames, Y, X)`` (dask or memory-mapped; never loaded whole)."""
    sample = np.asarray(movie[: min(50, movie.shape[0])])
    low, high = (np.percentile(sample, [1, 99.8]) if sample.size else (0.0, 1.0))
    scale = (1.0 / frame_rate if frame_rate else 1.0, 1.0, 1.0)
    return (
        movie,
        {
            "name": f"plane {plane} · raw stack",
            "colormap": "gray",
            "contrast_limits": (float(low), float(max(high, low + 1))),
            "scale": scale,
            "translate": (0.0, *translate),
            "visible": True,
            "metadata": {"kind": RAW, "plane": plane, "frame_rate": frame_rate},
        },
        "image",
    )


def population_activity(responses: np.ndarray) -> np.ndarray:
    """Mean recorded response over neurons per frame (as the results folder stores it)."""
    return np.asarray(responses, np.float64).mean(0).astype(np.float32)


def results_frame_rate(path) -> float:
    """The stimulus frame rate of a results folder's recording (30 Hz, Sensorium's, if unrecorded)."""
    import json
    from pathlib import Path

    info = Path(path) / "recording" / "recording.json"
    try:
        return float(json.loads(info.read_text()).get("frame_rate", 30.0))
    except (OSError, ValueError):
        return 30.0


def results_layers(results, *, with_traces: bool = True) -> list[tuple]:
    """Layers of a loaded results folder (``movie_reconstruction.results.Results``): the grid of
    stimulus | reconstruction | difference per trial with its captions and mask outline, then
    the mean image and ROI map as hidden context right of the grid."""
    rate = results_frame_rate(results.path)
    views = [
        TrialView(
            trial_id=t.trial_id,
            stimulus=t.stimulus,
            frame_rate=rate,
            reconstruction=t.reconstruction,
            tier=t.tier,
            frame_correlation=t.frame_correlation,
            population_activity=t.population_activity,
            metrics={"correlation": t.correlation, "ssim": t.ssim},
        )
        for t in results.trials
    ]
    n_models = max((t.members for t in results.trials), default=len(results.checkpoints) or 1)
    extra = {"results_folder": str(results.path), "summary": (results.metrics or {}).get("summary"),
             "report": str(results.report) if results.report else None}
    if results.controls:
        extra["controls"] = results.controls
    layers = trial_layers(views, n_models=n_models, mask_alpha=results.mask, extra_metadata=extra)
    if results.rois:
        right_of_grid = grid_width(views[0].stimulus.shape[1:]) + GAP * 4 if views else 0.0
        layers += fov_layers(_results_planes(results, rate, with_traces), origin_x=right_of_grid, context=True)
    return layers


def _results_planes(results, rate: float, with_traces: bool) -> list:
    """The results folder's ROI map per plane, with the traces of its own suite2p output when they match."""
    from types import SimpleNamespace

    planes = []
    threshold = ((results.provenance or {}).get("settings", {}).get("extract") or {}).get("cell_threshold", 0.5)
    spks = _suite2p_traces(results.path, threshold) if with_traces else {}
    for plane, arrays in sorted(results.rois.items()):
        labels = np.asarray(arrays.get("labels"))
        traces = spks.get(plane)
        if traces is not None and traces.n_cells < (int(labels.max()) if labels.size else 0):
            traces = None  # not the ROIs the map was drawn from
        planes.append(
            SimpleNamespace(
                plane=plane,
                mean_image=arrays.get("mean_image"),
                labels=lambda labels=labels: labels,
                n_cells=int(labels.max()) if labels.size else 0,
                frame_shape=labels.shape,
                spks=traces.spks if traces is not None else np.zeros((0, 0), np.float32),
                F=traces.F if traces is not None else np.zeros((0, 0), np.float32),
                frame_rate=traces.frame_rate if traces is not None else rate,
                roi_index=traces.roi_index if traces is not None else np.zeros(0, int),
                cell_probability=traces.cell_probability if traces is not None else np.zeros(0),
                source=str(results.path),
            )
        )
    return planes


def _suite2p_traces(path, cell_threshold) -> dict:
    """``{plane: Traces}`` from the results folder's own suite2p output, when it is there."""
    from pathlib import Path

    folder = Path(path) / "extraction" / "suite2p"
    if not folder.is_dir():
        return {}
    try:
        from ..io.suite2p_folder import read_suite2p_folder

        planes = read_suite2p_folder(folder, cell_threshold=cell_threshold)
    except Exception:  # noqa: BLE001 - traces are an extra; the layers do not need them
        return {}
    return {int(t.plane): t for t in planes}
