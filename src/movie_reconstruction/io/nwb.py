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

from pathlib import Path

import numpy as np

from ..errors import InputError
from .behaviour import CHANNEL_ALIASES, BehaviourTable
from .nwb_imaging import read_imaging
from .nwb_objects import describe_nwb  # noqa: F401 - re-exported: callers import it from here
from .nwb_objects import (
    NwbSession,
    nwb_objects,
    objects_listing,
    open_nwb,
    pick_objects,
    series_times,
    series_values,
)


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
    chosen = pick_objects(candidates, STIMULUS_KINDS, stimulus, "stimulus presentation", "stimulus=NAME (--nwb-stimulus)",
                   session.path)
    if not chosen:
        session.notes.append("no stimulus presentation found")
        return
    where, obj = chosen[0]
    kind = type(obj).__name__
    if kind == "IndexSeries":
        template = obj.indexed_images if obj.indexed_images is not None else obj.indexed_timeseries
        frames, times = _frames_of(template)[np.asarray(obj.data[:], dtype=np.int64)], series_times(obj)
        session.used["stimulus frames"] = f"{template.name} ({type(template).__name__})"
    elif kind == "TimeIntervals":
        column = "frame" if "frame" in obj.colnames else "frame_index"
        templates = [(p, o) for p, o in objects if type(o).__name__ in ("ImageSeries", "OpticalSeries", "Images")
                     and not p.startswith("acquisition")]
        if len(templates) != 1:
            raise InputError(f"table {obj.name!r} indexes frames, but the file has {len(templates)} image sets: "
                             f"{objects_listing(templates, ('ImageSeries', 'OpticalSeries', 'Images'))}", session.path)
        frames = _frames_of(templates[0][1])[np.asarray(obj[column].data[:], dtype=np.int64)]
        times = np.asarray(obj["start_time"].data[:], dtype=np.float64)
        session.used["stimulus frames"] = templates[0][0]
    else:
        frames, times = _frames_of(obj), series_times(obj)
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
        values = series_values(obj)
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
        session.behaviour.append(BehaviourTable(series_times(obj), channels, session.path))
        session.used["behaviour " + "/".join(channels)] = where


# ------------------------------------------------------------------------------------ entry points
def read_nwb(path, *, response: str | None = None, stimulus: str | None = None, size=(36, 64)) -> NwbSession:
    """Everything the pipeline needs from an ophys NWB file (see the module docstring)."""
    path = Path(path)
    io, nwb = open_nwb(path)
    try:
        objects = nwb_objects(nwb)
        session = NwbSession(path=path, name=str(nwb.session_id or nwb.identifier or path.stem), imaging_times=None,
                             traces=[], raw=None, stimulus_frames=None, stimulus_times=None, trials=None)
        read_imaging(objects, session, response)
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
