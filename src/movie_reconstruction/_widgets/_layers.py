"""Layer data for the viewer, as plain ``(data, kwargs, layer_type)`` tuples (no napari import).

The same builders serve the widgets, the readers (a saved results folder, a suite2p folder)
and the writer, so a reconstruction looks the same however it got into the viewer.

Layout of a reconstruction: one row per trial, the stimulus on the left and its
reconstruction on the right, both ``(T, H, W)`` on the same time axis (seconds from the
trial's start: frame ``k`` of either is at ``k / frame_rate``). One 2-D labels layer draws
the transparency mask as an outline over every movie: label 1 where pixels are evaluated
(alpha >= 1), label 2 where they are only updated (0.5 <= alpha < 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GAP = 4  # pixels between movies in the grid
STIMULUS = "stimulus"
RECONSTRUCTION = "reconstruction"
MASK = "mask"
ROIS = "rois"
MEAN_IMAGE = "mean image"
RAW = "raw"
CONTRAST = (0.0, 255.0)  # stimulus and reconstruction share these limits: both are grey levels


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


def stimulus_name(trial_id: int) -> str:
    return f"trial {trial_id} · stimulus"


def reconstruction_name(trial_id: int, n_models: int) -> str:
    return f"trial {trial_id} · reconstruction ({ensemble_label(n_models)})"


def grid_translate(row: int, column: int, frame_shape, *, origin=(0.0, 0.0), pixel_scale: float = 1.0):
    """World (y, x) of the top-left pixel of the movie at ``row``, ``column`` of the grid."""
    h, w = frame_shape
    return (
        origin[0] + row * (h + GAP) * pixel_scale,
        origin[1] + column * (w + GAP) * pixel_scale,
    )


def _movie_kwargs(name, frame_rate, translate_yx, pixel_scale, metadata, visible=True) -> dict:
    return {
        "name": name,
        "colormap": "gray",
        "contrast_limits": CONTRAST,
        "scale": (1.0 / frame_rate, pixel_scale, pixel_scale),
        "translate": (0.0, *translate_yx),
        "interpolation2d": "nearest",
        "visible": visible,
        "metadata": metadata,
    }


def trial_layers(
    views: list[TrialView],
    *,
    n_models: int = 1,
    mask_alpha: np.ndarray | None = None,
    origin=(0.0, 0.0),
    pixel_scale: float = 1.0,
    extra_metadata: dict | None = None,
) -> list[tuple]:
    """Stimulus | reconstruction per trial (rows), then the mask outline over all of them."""
    layers = []
    frame_shape = None
    for row, view in enumerate(views):
        stimulus = np.asarray(view.stimulus, np.float32)
        frame_shape = stimulus.shape[1:]
        common = {
            "trial_id": int(view.trial_id),
            "tier": view.tier,
            "frame_rate": float(view.frame_rate),
            "n_models": int(n_models),
            "metrics": dict(view.metrics),
            "frame_correlation": None if view.frame_correlation is None else np.asarray(view.frame_correlation),
            "population_activity": None if view.population_activity is None else np.asarray(view.population_activity),
            **(extra_metadata or {}),
        }
        layers.append(
            (
                stimulus,
                _movie_kwargs(
                    stimulus_name(view.trial_id),
                    view.frame_rate,
                    grid_translate(row, 0, frame_shape, origin=origin, pixel_scale=pixel_scale),
                    pixel_scale,
                    {**common, "kind": STIMULUS},
                ),
                "image",
            )
        )
        if view.reconstruction is not None:
            reconstruction = np.asarray(view.reconstruction, np.float32)
            if reconstruction.shape != stimulus.shape:
                raise ValueError(
                    f"trial {view.trial_id}: reconstruction {reconstruction.shape} and stimulus {stimulus.shape} differ"
                )
            layers.append(
                (
                    reconstruction,
                    _movie_kwargs(
                        reconstruction_name(view.trial_id, n_models),
                        view.frame_rate,
                        grid_translate(row, 1, frame_shape, origin=origin, pixel_scale=pixel_scale),
                        pixel_scale,
                        {**common, "kind": RECONSTRUCTION},
                    ),
                    "image",
                )
            )
    if mask_alpha is not None and frame_shape is not None:
        layers.append(mask_layer(mask_alpha, len(views), origin=origin, pixel_scale=pixel_scale))
    return layers


def mask_outline_labels(alpha: np.ndarray) -> np.ndarray:
    """The outlines of the mask's regions: 1 on the border of the evaluated region (alpha >= 1),
    2 on the border of the updated region (alpha >= 0.5), 0 elsewhere (so the movie shows through)."""
    alpha = np.asarray(alpha, np.float32)
    labels = np.zeros(alpha.shape, np.uint8)
    for value, region in ((2, alpha >= 0.5), (1, alpha >= 1.0)):
        labels[_border(region)] = value
    return labels


def _border(region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` with a 4-neighbour outside it (the frame's edge counts as outside)."""
    padded = np.pad(region, 1, constant_values=False)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return region & ~inner


def mask_layer(alpha: np.ndarray, n_rows: int, *, origin=(0.0, 0.0), pixel_scale: float = 1.0, columns: int = 2) -> tuple:
    """The mask outline repeated over every movie of the grid, as one 2-D labels layer."""
    one = mask_outline_labels(alpha)
    h, w = one.shape
    grid = np.zeros((n_rows * (h + GAP) - GAP, columns * (w + GAP) - GAP), np.uint8)
    for row in range(n_rows):
        for column in range(columns):
            y, x = row * (h + GAP), column * (w + GAP)
            grid[y : y + h, x : x + w] = one
    kwargs = {
        "name": "transparency mask (1: evaluated, 2: updated only)",
        "scale": (pixel_scale, pixel_scale),
        "translate": tuple(origin),
        "opacity": 0.9,
        "metadata": {
            "kind": MASK,
            "alpha": np.asarray(alpha, np.float32),
            "evaluated_fraction": float((np.asarray(alpha) >= 1).mean()),
            "updated_fraction": float((np.asarray(alpha) >= 0.5).mean()),
        },
    }
    return grid, kwargs, "labels"


def fov_width(traces_list) -> float:
    return float(sum(t.frame_shape[1] + GAP * 4 for t in traces_list))


def fov_layers(traces_list, *, raw_stacks=None, origin_x: float = 0.0) -> list[tuple]:
    """Per plane: the mean image and the ROI labels (with each ROI's trace in the metadata),
    and the raw movie if given (lazy: a dask array is passed through untouched). Planes sit
    side by side from ``origin_x``."""
    layers = []
    x_offset = float(origin_x)
    for k, traces in enumerate(traces_list):
        plane = int(getattr(traces, "plane", k))
        translate = (0.0, x_offset)
        if raw_stacks is not None and k < len(raw_stacks) and raw_stacks[k] is not None:
            layers.append(raw_layer(raw_stacks[k], traces.frame_rate, plane, translate=translate))
        mean = np.asarray(traces.mean_image, np.float32)
        low, high = np.percentile(mean, [1, 99.5]) if mean.size else (0.0, 1.0)
        layers.append(
            (
                mean,
                {
                    "name": f"plane {plane} · mean image",
                    "colormap": "gray",
                    "contrast_limits": (float(low), float(max(high, low + 1e-6))),
                    "translate": translate,
                    "metadata": {"kind": MEAN_IMAGE, "plane": plane, "source": traces.source},
                },
                "image",
            )
        )
        layers.append(
            (
                traces.labels(),
                {
                    "name": f"plane {plane} · ROIs ({traces.n_cells} cells)",
                    "opacity": 0.45,
                    "translate": translate,
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
    """Layers of a loaded results folder (``movie_reconstruction.results.Results``): the ROI map
    left of the grid, then stimulus | reconstruction per trial and the mask outline."""
    from types import SimpleNamespace

    rate = results_frame_rate(results.path)
    layers = []
    if results.rois:
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
        layers += fov_layers(planes, origin_x=-fov_width(planes))
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
    extra = {"results_folder": str(results.path), "summary": (results.metrics or {}).get("summary")}
    if results.controls:
        extra["controls"] = results.controls.get("rows")
    layers += trial_layers(views, n_models=n_models, mask_alpha=results.mask, extra_metadata=extra)
    return layers


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
