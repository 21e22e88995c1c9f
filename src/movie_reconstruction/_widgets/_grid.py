"""The grid of movies in the results view: its geometry, and its text, comparison and mask
layers, as plain ``(data, kwargs, layer_type)`` tuples.

Captions are napari ``Points`` layers whose points are invisible and whose text is the label:
they sit in world coordinates, so they stay next to the movie they name when the view is
panned or zoomed. napari's text has one anchor per layer; in its image coordinates (y down)
``upper_left`` puts a text's last line just above its point, ``lower_left`` hangs the first
line below it. Each movie's caption rises from just above the movie's top-left corner, so the
grid leaves room for a line of text between rows; the legend hangs below the grid.

The difference of a trial (reconstruction minus stimulus) is a third movie beside the pair,
hidden until the difference view is switched on: a dark-centred diverging colormap, so that
where the two agree is black and the eye goes to where they differ.
"""

from __future__ import annotations

import numpy as np

GAP = 4  # pixels between the columns of the grid (and around the field of view)
CAPTIONS = "captions"
MASK = "mask"
DIFFERENCE = "difference"
CAPTION_COLOUR = "#f0f0f0"
EVALUATED_COLOUR = "#ff3b30"  # label 1 of the mask outline
UPDATED_COLOUR = "#4da6ff"  # label 2: a light blue that stays readable on the black canvas
DIFFERENCE_LIMIT = 128.0  # grey levels: the colormap is centred at 0 between -limit and +limit
DIFFERENCE_COLORMAP = {
    "name": "reconstruction minus stimulus (movie-reconstruction)",
    "colors": [[0.15, 0.85, 0.35, 1.0], [0.0, 0.0, 0.0, 1.0], [0.95, 0.25, 0.95, 1.0]],
}
MASK_LEGEND = (
    ("mask outline", CAPTION_COLOUR),
    ("red: evaluated (alpha ≥ 1)", EVALUATED_COLOUR),
    ("blue: updated only (0.5 ≤ alpha < 1)", UPDATED_COLOUR),
)
DIFFERENCE_LEGEND = "difference: magenta = reconstruction brighter, green = darker"


def mask_colormap() -> dict:
    """The mask outline's colours by label, matching :data:`MASK_LEGEND`."""
    return {None: "transparent", 0: "transparent", 1: EVALUATED_COLOUR, 2: UPDATED_COLOUR}


def caption_layer(entries, *, name: str, visible: bool = True, metadata: dict | None = None, size: int = 9,
                  anchor: str = "upper_left") -> tuple:
    """A text-only points layer: ``entries`` are ``(y, x, text, colour)`` in world coordinates."""
    entries = list(entries)
    points = np.array([[y, x] for y, x, _text, _colour in entries], np.float32).reshape(-1, 2)
    features = {"text": [e[2] for e in entries], "colour": [e[3] for e in entries]}
    kwargs = {
        "name": name,
        "features": features,
        "text": {"string": "{text}", "color": {"feature": "colour"}, "size": size, "anchor": anchor},
        "size": 1,
        "face_color": "transparent",
        "border_color": "transparent",
        "visible": visible,
        "metadata": {**(metadata or {}), "kind": CAPTIONS, "features": features},
    }
    return points, kwargs, "points"


def legend_layer(top: float, left: float) -> tuple:
    """The mask outline's legend, hanging below ``(top, left)``, each line in its colour.

    The lines share one point and are stacked by leading line breaks (napari's ``lower_left``
    hangs a text's first line below its point), so they stay one line apart whatever the
    zoom: a text's size is in screen pixels, a point's place is not.
    """
    entries = [(top, left, "\n" * k + text, colour) for k, (text, colour) in enumerate(MASK_LEGEND)]
    return caption_layer(entries, name="mask legend", anchor="lower_left", metadata={"view": "mask"})


def difference_movie(stimulus: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    return np.asarray(reconstruction, np.float32) - np.asarray(stimulus, np.float32)


def difference_kwargs(name: str, frame_rate: float, translate_yx, pixel_scale: float, metadata: dict) -> dict:
    return {
        "name": name,
        "colormap": DIFFERENCE_COLORMAP,
        "contrast_limits": (-DIFFERENCE_LIMIT, DIFFERENCE_LIMIT),
        "scale": (1.0 / frame_rate, pixel_scale, pixel_scale),
        "translate": (0.0, *translate_yx),
        "interpolation2d": "nearest",
        "axis_labels": ("time", "y", "x"),
        "visible": False,
        "metadata": {**metadata, "kind": DIFFERENCE},
    }


def row_gap(frame_shape) -> int:
    """Pixels between rows: room for one line of caption above each movie."""
    return max(GAP, int(round(frame_shape[0] / 4)))


def grid_translate(row: int, column: int, frame_shape, *, origin=(0.0, 0.0), pixel_scale: float = 1.0):
    """World (y, x) of the top-left pixel of the movie at ``row``, ``column`` of the grid."""
    h, w = frame_shape
    return (
        origin[0] + row * (h + row_gap(frame_shape)) * pixel_scale,
        origin[1] + column * (w + GAP) * pixel_scale,
    )


def grid_width(frame_shape, columns: int = 3) -> float:
    """Width in pixels of ``columns`` columns of the grid."""
    return float(columns * (frame_shape[1] + GAP) - GAP)


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


def mask_grid(alpha: np.ndarray, n_rows: int, columns: int = 2) -> np.ndarray:
    """The mask outline repeated over the first ``columns`` movies of every row of the grid."""
    one = mask_outline_labels(alpha)
    h, w = one.shape
    pitch = h + row_gap(one.shape)
    grid = np.zeros((n_rows * pitch - row_gap(one.shape), columns * (w + GAP) - GAP), np.uint8)
    for row in range(n_rows):
        for column in range(columns):
            y, x = row * pitch, column * (w + GAP)
            grid[y : y + h, x : x + w] = one
    return grid


def mask_layer(alpha: np.ndarray, n_rows: int, *, origin=(0.0, 0.0), pixel_scale: float = 1.0, columns: int = 2) -> tuple:
    """The mask outline over every movie of the grid, as one 2-D labels layer (red: evaluated, blue: updated)."""
    kwargs = {
        "name": "mask outline",
        "scale": (pixel_scale, pixel_scale),
        "translate": tuple(origin),
        "opacity": 0.9,
        "colormap": mask_colormap(),
        "axis_labels": ("y", "x"),
        "metadata": {
            "kind": MASK,
            "alpha": np.asarray(alpha, np.float32),
            "n_rows": int(n_rows),
            "evaluated_fraction": float((np.asarray(alpha) >= 1).mean()),
            "updated_fraction": float((np.asarray(alpha) >= 0.5).mean()),
        },
    }
    return mask_grid(alpha, n_rows, columns), kwargs, "labels"
