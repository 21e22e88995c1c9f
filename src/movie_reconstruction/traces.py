"""Traces extracted from one imaging plane: the typed result of suite2p (run by us or loaded
from an existing output folder)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RoiMask:
    """Pixels of one ROI in the field of view, with suite2p's per-pixel weights."""

    ypix: np.ndarray
    xpix: np.ndarray
    weights: np.ndarray

    @property
    def centroid(self) -> tuple[float, float]:
        w = self.weights if self.weights.sum() > 0 else np.ones_like(self.weights)
        return float(np.average(self.ypix, weights=w)), float(np.average(self.xpix, weights=w))


@dataclass
class Traces:
    """Fluorescence and deconvolved activity of the cells of one plane.

    Rows are the ROIs that passed the cell classifier (``cell_probability >=
    cell_threshold``); ``roi_index`` maps each row back to suite2p's ROI numbering.
    ``plane_offset`` is the time (s) between the start of an imaging frame and the
    acquisition of this plane, which alignment adds to the frame timestamps.
    """

    F: np.ndarray  # (cells, frames)
    Fneu: np.ndarray  # (cells, frames)
    spks: np.ndarray  # (cells, frames), OASIS deconvolved
    roi_masks: list[RoiMask]
    roi_index: np.ndarray  # (cells,) suite2p ROI numbers
    cell_probability: np.ndarray  # (cells,)
    frame_shape: tuple[int, int]
    mean_image: np.ndarray
    max_projection: np.ndarray | None
    frame_rate: float
    settings: dict = field(default_factory=dict, repr=False)
    plane: int = 0
    plane_offset: float = 0.0
    cell_threshold: float = 0.5
    source: str | None = None

    @property
    def n_cells(self) -> int:
        return int(self.F.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.F.shape[1])

    @property
    def centroids(self) -> np.ndarray:
        """(cells, 2) ROI centroids as (y, x) pixels."""
        return np.array([m.centroid for m in self.roi_masks], dtype=np.float32).reshape(-1, 2)

    def labels(self) -> np.ndarray:
        """A label image the size of the field of view: 0 is background, ROI row ``k`` is ``k + 1``.

        Where ROIs overlap, the pixel goes to the ROI that weighs it most.
        """
        labels = np.zeros(self.frame_shape, dtype=np.int32)
        best = np.zeros(self.frame_shape, dtype=np.float32)
        for k, mask in enumerate(self.roi_masks):
            w = np.asarray(mask.weights, dtype=np.float32)
            take = w > best[mask.ypix, mask.xpix]
            labels[mask.ypix[take], mask.xpix[take]] = k + 1
            best[mask.ypix[take], mask.xpix[take]] = w[take]
        return labels

    def corrected(self, neuropil_coefficient: float = 0.7) -> np.ndarray:
        """Neuropil-corrected fluorescence ``F - c * Fneu``."""
        return self.F - neuropil_coefficient * self.Fneu
