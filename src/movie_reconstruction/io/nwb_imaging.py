"""The imaging part of an NWB file: a raw ``TwoPhotonSeries`` as a lazy stack, and ROI response
series with their plane segmentations as one :class:`~movie_reconstruction.traces.Traces` per plane."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..traces import RoiMask, Traces
from .nwb_objects import NwbSession, pick_objects, series_times, series_values

DECONVOLVED = ("deconv", "spks", "spike")


def _roi_masks(table, rows: np.ndarray, frame_shape) -> tuple[list[RoiMask], tuple[int, int]]:
    columns = table.colnames
    masks = []
    if "pixel_mask" in columns:
        for r in rows:
            pixels = np.asarray([tuple(p) for p in table["pixel_mask"][int(r)]], dtype=np.float64).reshape(-1, 3)
            masks.append(RoiMask(pixels[:, 1].astype(np.int64), pixels[:, 0].astype(np.int64), pixels[:, 2].astype(np.float32)))
    elif "image_mask" in columns:
        images = table["image_mask"].data
        frame_shape = frame_shape or tuple(int(s) for s in np.shape(images[0]))
        for r in rows:
            image = np.asarray(images[int(r)])
            y, x = np.nonzero(image)
            masks.append(RoiMask(y.astype(np.int64), x.astype(np.int64), image[y, x].astype(np.float32)))
    else:
        raise InputError(f"plane segmentation {table.name!r} has neither pixel_mask nor image_mask")
    if frame_shape is None:
        frame_shape = (max((int(m.ypix.max()) for m in masks if m.ypix.size), default=0) + 1,
                       max((int(m.xpix.max()) for m in masks if m.xpix.size), default=0) + 1)
    return masks, tuple(frame_shape)


def _curated_rows(table) -> np.ndarray:
    """Rows of the segmentation that are cells: all, or those an ``iscell`` column marks."""
    n = len(table)
    if "iscell" not in table.colnames:
        return np.arange(n)
    iscell = np.asarray(table["iscell"].data[:], dtype=np.float64).reshape(n, -1)
    return np.flatnonzero(iscell[:, 0] > 0.5)


def _sibling(container_objects, table, words: tuple[str, ...], shape):
    """Another response series on the same ROIs whose name has one of ``words`` (e.g. the neuropil)."""
    for _, obj in container_objects:
        if type(obj).__name__ == "RoiResponseSeries" and obj.rois.table is table and obj.data.shape == shape:
            if any(w in obj.name.lower() for w in words):
                return obj
    return None


def _traces_of(series, objects, plane: int, frame_shape, mean_image) -> tuple[Traces, np.ndarray]:
    table = series.rois.table
    series_rows = np.asarray(series.rois.data[:], dtype=np.int64)
    keep = np.flatnonzero(np.isin(series_rows, _curated_rows(table)))
    values = series_values(series).reshape(series.data.shape[0], -1).T[keep].astype(np.float32)  # (rois, frames)
    fluorescence = _sibling(objects, table, ("fluor", "raw", "f_"), series.data.shape)
    neuropil = _sibling(objects, table, ("neuropil", "fneu"), series.data.shape)
    F, Fneu = (np.asarray(series_values(s), np.float32).T[keep] if s is not None else None for s in (fluorescence, neuropil))
    masks, shape = _roi_masks(table, series_rows[keep], frame_shape)
    times = series_times(series)
    traces = Traces(
        F=F if F is not None else values, Fneu=Fneu if Fneu is not None else np.zeros_like(values), spks=values,
        roi_masks=masks, roi_index=series_rows[keep], cell_probability=np.ones(keep.size, np.float32),
        frame_shape=shape, mean_image=mean_image if mean_image is not None else np.zeros(shape, np.float32),
        max_projection=None, frame_rate=float(1.0 / np.median(np.diff(times))), plane=plane,
        source=f"{series.name} on {table.name}",
    )
    return traces, times


def _mean_image(objects):
    for where, obj in objects:
        if type(obj).__name__ in ("GrayscaleImage", "Image") and "mean" in obj.name.lower():
            return np.asarray(obj.data[:], np.float32), where
    return None, None


def _raw_stack(series, path: Path):
    import dask.array as da

    from .tiff import RawStack

    data = series.data
    if len(data.shape) != 3:
        raise InputError(f"TwoPhotonSeries {series.name!r} has shape {data.shape}; expected (frames, rows, columns)", path)
    lazy = da.from_array(data, chunks=(min(256, data.shape[0]), *data.shape[1:]))[:, None, None]
    times = series_times(series)
    return RawStack(data=lazy, paths=[path], frame_rate=float(1.0 / np.median(np.diff(times))), n_planes=1, n_channels=1,
                    metadata={"nwb_series": series.name}), times


def read_imaging(objects, session: NwbSession, response: str | None) -> None:
    raw = pick_objects(objects, ("TwoPhotonSeries",), None, "TwoPhotonSeries", "a single raw series", session.path)
    frame_shape = None
    if raw:
        where, series = raw[0]
        session.raw, session.imaging_times = _raw_stack(series, session.path)
        session.used["raw frames"] = where
        frame_shape = session.raw.frame_shape
    chosen = pick_objects(objects, ("RoiResponseSeries",), response, "ROI response series", "response=NAME (--nwb-response)",
                   session.path, prefer=lambda o: any(w in o.name.lower() for w in DECONVOLVED))
    mean_image, mean_where = _mean_image(objects)
    if mean_where:
        session.used["mean image"] = mean_where
    times_per_plane = []
    for plane, (where, series) in enumerate(chosen):
        traces, times = _traces_of(series, objects, plane, frame_shape, mean_image)
        session.traces.append(traces)
        times_per_plane.append(times)
        session.used[f"responses plane {plane}"] = where
        session.used[f"ROIs plane {plane}"] = f"{series.rois.table.name} ({len(traces.roi_masks)} cells)"
    if times_per_plane:
        first = times_per_plane[0]
        for plane, times in enumerate(times_per_plane):
            if times.size != first.size:
                raise InputError(f"plane {plane}'s responses have {times.size} frames, plane 0's {first.size}", session.path)
        session.plane_offsets = [float(np.median(t - first)) for t in times_per_plane]
        if session.imaging_times is None or session.imaging_times.size != first.size:
            session.imaging_times = first
