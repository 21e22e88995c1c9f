"""Read an ophys NWB 2.x file (the format of DANDI) as the same session the manifest describes.

What is read, all on the file's session clock:

- **imaging**: a raw ``TwoPhotonSeries`` (as a lazy :class:`~movie_reconstruction.io.tiff.RawStack`
  for extraction) and/or extracted ROIs: a ``PlaneSegmentation`` (``pixel_mask`` as
  ``(x, y, weight)`` or ``image_mask`` as ``(rows, columns)``; an ``iscell`` column, as suite2p
  writes it, keeps the curated cells) with ``RoiResponseSeries`` (in ``Fluorescence``,
  ``DfOverF`` or any container). The response series is chosen by name (``response=``); by
  default the only one, or the only deconvolved one (``deconv``/``spks``/``spike`` in its name).
  Several series of that name (one per plane segmentation) are the planes.
- **stimulus**: an ``IndexSeries`` (indices into an ``ImageSeries``/``OpticalSeries`` or an
  ``Images`` set, with the presentation times), a presentation ``TimeIntervals`` table with
  ``start_time`` and a ``frame`` column (indices into the stimulus ``ImageSeries``), or an
  ``ImageSeries``/``OpticalSeries`` with one timestamp per frame shown.
- **trials**: the ``trials`` table: ``start_time``, ``stop_time``, and optional ``tier`` and
  ``trial_id`` columns (without ``tier`` every trial is ``train``).
- **behaviour** (``processing/behavior`` and ``acquisition``): ``PupilTracking`` series ->
  ``pupil``, ``EyeTracking`` (x, y) -> ``pupil_x``, ``pupil_y``, and series whose names are a
  behaviour channel or alias (``running``, ``speed``, ``running_speed``, ...).

The NWB objects used are listed in ``NwbSession.used`` (and in the recording's provenance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..traces import RoiMask, Traces
from .behaviour import CHANNEL_ALIASES, BehaviourTable

CONTAINER_FIELDS = ("roi_response_series", "time_series", "spatial_series", "plane_segmentations", "images")
DECONVOLVED = ("deconv", "spks", "spike")


@dataclass
class NwbSession:
    path: Path
    name: str
    imaging_times: np.ndarray | None
    traces: list[Traces]
    raw: object | None  # RawStack of the TwoPhotonSeries, lazy
    stimulus_frames: np.ndarray | None  # (T, H, W) float32 0..255 at the requested size
    stimulus_times: np.ndarray | None
    trials: object | None  # align.TrialTable
    behaviour: list[BehaviourTable] = field(default_factory=list)
    plane_offsets: list[float] = field(default_factory=list)
    used: dict[str, str] = field(default_factory=dict)  # role -> NWB object path
    notes: list[str] = field(default_factory=list)


def _open(path: Path):
    from pynwb import NWBHDF5IO

    if not path.is_file():
        raise InputError("NWB file not found", path)
    try:
        io = NWBHDF5IO(str(path), "r")
        return io, io.read()
    except Exception as exc:  # h5py/hdmf raise many kinds for a file that is not NWB
        raise InputError(f"not a readable NWB file ({type(exc).__name__}: {exc})", path) from None


def nwb_objects(nwb) -> list[tuple[str, object]]:
    """Every data object in the file as ``(path, object)``, containers' children included."""
    roots = [("acquisition", nwb.acquisition), ("stimulus/presentation", nwb.stimulus),
             ("stimulus/templates", nwb.stimulus_template), ("intervals", nwb.intervals or {})]
    roots += [(f"processing/{name}", module.data_interfaces) for name, module in nwb.processing.items()]
    found = []
    for prefix, group in roots:
        for name, obj in group.items():
            found.append((f"{prefix}/{name}", obj))
            for attr in CONTAINER_FIELDS:
                children = getattr(obj, attr, None)
                if hasattr(children, "items"):
                    found += [(f"{prefix}/{name}/{child}", item) for child, item in children.items()]
    return found


def describe_nwb(path) -> str:
    """A listing of what an NWB file holds: one line per object, with its type and shape."""
    io, nwb = _open(Path(path))
    try:
        lines = []
        for where, obj in nwb_objects(nwb):
            data = getattr(obj, "data", None)
            shape = f" {tuple(data.shape)}" if hasattr(data, "shape") else ""
            lines.append(f"{where}: {type(obj).__name__}{shape}")
        return "\n".join(lines)
    finally:
        io.close()


def _listing(objects, kinds) -> str:
    return "; ".join(f"{p} ({type(o).__name__})" for p, o in objects if type(o).__name__ in kinds) or "none"


def _pick(objects, kinds: tuple[str, ...], name: str | None, what: str, option: str, path: Path, prefer=None):
    """The objects of ``kinds`` called ``name`` (or the only / the only preferred one)."""
    candidates = [(p, o) for p, o in objects if type(o).__name__ in kinds]
    if name is not None:
        chosen = [(p, o) for p, o in candidates if o.name == name or p == name or p.endswith("/" + name)]
        if not chosen:
            raise InputError(f"no {what} called {name!r}; the file has: {_listing(objects, kinds)}", path)
        return chosen
    # several of one name (one per plane) are taken together
    for group in (candidates, [(p, o) for p, o in candidates if prefer is not None and prefer(o)]):
        if group and len({o.name for _, o in group}) == 1:
            return group
    if not candidates:
        return candidates
    raise InputError(f"more than one {what}; choose one with {option}: {_listing(objects, kinds)}", path)


def _times(series) -> np.ndarray:
    return np.asarray(series.get_timestamps(), dtype=np.float64)


def _values(series) -> np.ndarray:
    return np.asarray(series.get_data_in_units(), dtype=np.float64)


# ------------------------------------------------------------------------------------ imaging
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
    values = _values(series).reshape(series.data.shape[0], -1).T[keep].astype(np.float32)  # (rois, frames)
    fluorescence = _sibling(objects, table, ("fluor", "raw", "f_"), series.data.shape)
    neuropil = _sibling(objects, table, ("neuropil", "fneu"), series.data.shape)
    F, Fneu = (np.asarray(_values(s), np.float32).T[keep] if s is not None else None for s in (fluorescence, neuropil))
    masks, shape = _roi_masks(table, series_rows[keep], frame_shape)
    times = _times(series)
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
    times = _times(series)
    return RawStack(data=lazy, paths=[path], frame_rate=float(1.0 / np.median(np.diff(times))), n_planes=1, n_channels=1,
                    metadata={"nwb_series": series.name}), times


def _read_imaging(objects, session: NwbSession, response: str | None) -> None:
    raw = _pick(objects, ("TwoPhotonSeries",), None, "TwoPhotonSeries", "a single raw series", session.path)
    frame_shape = None
    if raw:
        where, series = raw[0]
        session.raw, session.imaging_times = _raw_stack(series, session.path)
        session.used["raw frames"] = where
        frame_shape = session.raw.frame_shape
    chosen = _pick(objects, ("RoiResponseSeries",), response, "ROI response series", "response=NAME (--nwb-response)",
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


# ------------------------------------------------------------------------------------ stimulus
STIMULUS_KINDS = ("IndexSeries", "TimeIntervals", "ImageSeries", "OpticalSeries")


def _frames_of(obj) -> np.ndarray:
    """The frames an ``ImageSeries``/``OpticalSeries`` or an ``Images`` set holds, as an array."""
    if type(obj).__name__ == "Images":
        ordered = obj.order_of_images.data if obj.order_of_images is not None else list(obj.images.values())
        return np.stack([np.asarray(image.data[:]) for image in ordered])
    return np.asarray(obj.data[:])


def _read_stimulus(objects, session: NwbSession, stimulus: str | None, size) -> None:
    from .movies import resize_frames, to_grey, to_grey_levels

    def usable(o) -> bool:
        kind = type(o).__name__
        if kind == "TimeIntervals":
            return o.name not in ("trials", "epochs") and any(c in o.colnames for c in ("frame", "frame_index"))
        return kind == "IndexSeries" or (kind in ("ImageSeries", "OpticalSeries") and o.timestamps is not None)

    shown = [(p, o) for p, o in objects if not p.startswith("acquisition") and usable(o)]
    # an ImageSeries that an IndexSeries or a table indexes is a template, not a presentation
    indexing = [(p, o) for p, o in shown if type(o).__name__ in ("IndexSeries", "TimeIntervals")]
    candidates = indexing or shown
    chosen = _pick(candidates, STIMULUS_KINDS, stimulus, "stimulus presentation", "stimulus=NAME (--nwb-stimulus)",
                   session.path)
    if not chosen:
        session.notes.append("no stimulus presentation found")
        return
    where, obj = chosen[0]
    kind = type(obj).__name__
    if kind == "IndexSeries":
        template = obj.indexed_images if obj.indexed_images is not None else obj.indexed_timeseries
        frames, times = _frames_of(template)[np.asarray(obj.data[:], dtype=np.int64)], _times(obj)
        session.used["stimulus frames"] = f"{template.name} ({type(template).__name__})"
    elif kind == "TimeIntervals":
        column = "frame" if "frame" in obj.colnames else "frame_index"
        templates = [(p, o) for p, o in objects if type(o).__name__ in ("ImageSeries", "OpticalSeries", "Images")
                     and not p.startswith("acquisition")]
        if len(templates) != 1:
            raise InputError(f"table {obj.name!r} indexes frames, but the file has {len(templates)} image sets: "
                             f"{_listing(templates, ('ImageSeries', 'OpticalSeries', 'Images'))}", session.path)
        frames = _frames_of(templates[0][1])[np.asarray(obj[column].data[:], dtype=np.int64)]
        times = np.asarray(obj["start_time"].data[:], dtype=np.float64)
        session.used["stimulus frames"] = templates[0][0]
    else:
        frames, times = _frames_of(obj), _times(obj)
    session.used["stimulus presentation"] = where
    grey = to_grey_levels(to_grey(frames), session.path)
    if grey.ndim != 3:
        raise InputError(f"stimulus frames have shape {grey.shape}; expected (frames, rows, columns)", session.path)
    session.stimulus_frames = np.clip(resize_frames(grey, tuple(size)), 0, 255) if size else grey.astype(np.float32)
    session.stimulus_times = times


def _read_trials(nwb, session: NwbSession) -> None:
    from ..align import TrialTable
    from ..recording import TIERS

    table = nwb.trials
    if table is None or session.stimulus_times is None:
        session.notes.append("no trials table" if table is None else "trials without a stimulus")
        return
    starts = np.asarray(table["start_time"].data[:], np.float64)
    stops = np.asarray(table["stop_time"].data[:], np.float64)
    eps = 1e-6  # times written as float64 round-trip exactly; this only guards against float32 tables
    first = np.searchsorted(session.stimulus_times, starts - eps, side="left")
    n_frames = np.searchsorted(session.stimulus_times, stops - eps, side="left") - first
    if "tier" in table.colnames:
        tiers = np.asarray([str(t) for t in table["tier"].data[:]])
        bad = sorted(set(tiers.tolist()) - set(TIERS))
        if bad:
            raise InputError(f"trials table has unknown tier(s) {bad}; expected {list(TIERS)}", session.path)
    else:
        tiers = np.full(starts.size, "train")
        session.notes.append("the trials table has no 'tier' column: every trial is 'train'")
    ids = np.asarray(table["trial_id"].data[:] if "trial_id" in table.colnames else table.id.data[:], dtype=np.int64)
    session.trials = TrialTable(ids, first.astype(int), n_frames.astype(int), tiers)
    session.used["trials"] = "intervals/trials"


# ------------------------------------------------------------------------------------ behaviour
def _channel_of(name: str) -> str | None:
    lowered = name.lower()
    for channel, aliases in CHANNEL_ALIASES.items():
        if lowered in aliases:
            return channel
    return None


def _read_behaviour(objects, session: NwbSession) -> None:
    kinds = {where: type(obj).__name__ for where, obj in objects}
    for where, obj in objects:
        kind = type(obj).__name__
        if kind not in ("TimeSeries", "SpatialSeries") or not where.startswith(("processing/behavior", "acquisition")):
            continue
        parent_kind = kinds.get(where.rsplit("/", 1)[0], "")
        values = _values(obj)
        if parent_kind == "EyeTracking" and values.ndim == 2 and values.shape[1] == 2:
            channels = {"pupil_x": values[:, 0], "pupil_y": values[:, 1]}
        elif parent_kind == "PupilTracking" and values.ndim == 1:
            channels = {"pupil": values}
        elif _channel_of(obj.name) is not None and values.ndim == 1:
            channels = {_channel_of(obj.name): values}
        else:
            continue
        taken = {c for table in session.behaviour for c in table.channels}
        if taken & set(channels):
            raise InputError(f"behaviour channel(s) {sorted(taken & set(channels))} found twice (again in {where})",
                             session.path)
        session.behaviour.append(BehaviourTable(_times(obj), channels, session.path))
        session.used["behaviour " + "/".join(channels)] = where


# ------------------------------------------------------------------------------------ entry points
def read_nwb(path, *, response: str | None = None, stimulus: str | None = None, size=(36, 64)) -> NwbSession:
    """Everything the pipeline needs from an ophys NWB file (see the module docstring)."""
    path = Path(path)
    io, nwb = _open(path)
    try:
        objects = nwb_objects(nwb)
        session = NwbSession(path=path, name=str(nwb.session_id or nwb.identifier or path.stem), imaging_times=None,
                             traces=[], raw=None, stimulus_frames=None, stimulus_times=None, trials=None)
        _read_imaging(objects, session, response)
        _read_stimulus(objects, session, stimulus, size)
        _read_trials(nwb, session)
        _read_behaviour(objects, session)
    except InputError as exc:
        io.close()
        raise InputError(exc.problem, path) from None
    if session.raw is None:
        io.close()  # everything else is in memory; a raw series stays open for lazy reading
    return session


def recording_from_nwb(source, traces=None, *, signal: str = "spks", behaviour_method: str = "linear", **read_options):
    """The aligned :class:`~movie_reconstruction.recording.Recording` of an NWB session.

    ``source``: a path or an :class:`NwbSession`. ``traces``: one
    :class:`~movie_reconstruction.traces.Traces` per plane, extracted from the raw series; by
    default the file's own ROI responses.
    """
    from ..align import align_session

    session = source if isinstance(source, NwbSession) else read_nwb(source, **read_options)
    own = traces is None
    traces = session.traces if own else list(traces)
    problems = [("no ROI responses (run extraction on its TwoPhotonSeries first)", not traces),
                ("no stimulus presentation (IndexSeries, presentation table or timestamped ImageSeries)",
                 session.stimulus_times is None),
                ("no trials table", session.trials is None), ("no imaging timestamps", session.imaging_times is None)]
    for problem, missing in problems:
        if missing:
            raise InputError(f"the NWB file has {problem}", session.path)
    arrays = [t.corrected() if signal == "corrected" else getattr(t, signal) for t in traces]
    offsets = session.plane_offsets if own else [t.plane_offset for t in traces]
    recording = align_session(
        traces=arrays, imaging_times=session.imaging_times, stimulus_frames=session.stimulus_frames,
        stimulus_times=session.stimulus_times, trials=session.trials,
        behaviour=[(t.times, t.channels) for t in session.behaviour], plane_offsets=offsets,
        neuron_positions=np.concatenate([t.centroids for t in traces]), behaviour_method=behaviour_method,
        name=session.name, source=session.path,
    )
    recording.extra["nwb_objects"] = dict(session.used)
    recording.extra["nwb_notes"] = list(session.notes)
    return recording
