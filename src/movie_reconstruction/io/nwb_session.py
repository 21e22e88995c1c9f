"""Write a manifest session (a lab's, or the simulator's) as one ophys NWB file that
:func:`movie_reconstruction.io.nwb.read_nwb` reads back as the same session.

Layout: raw frames as one ``TwoPhotonSeries`` per plane (``acquisition/TwoPhotonSeries_plane{p}``,
optional), the extracted ROIs as one ``PlaneSegmentation`` per plane with ``Fluorescence``,
``Neuropil`` and ``Deconvolved`` series (``processing/ophys/Fluorescence_plane{p}``), the mean
images, the stimulus as an ``IndexSeries`` into the ``Images`` of its distinct frames (at the
model's frame size), the trials with their tiers, and running and pupil in
``processing/behavior``. Every time is the manifest's session clock (timestamps or ``[sync]``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import InputError


def _stimulus(nwb, frames: np.ndarray, times: np.ndarray) -> None:
    from pynwb.base import ImageReferences, Images
    from pynwb.image import GrayscaleImage, IndexSeries

    distinct, index = np.unique(np.asarray(frames[: times.size], np.float32), axis=0, return_inverse=True)
    images = [GrayscaleImage(name=f"frame_{k:05d}", data=frame, description="grey levels 0..255")
              for k, frame in enumerate(distinct)]
    template = Images(name="stimulus_frames", images=images, description="the distinct stimulus frames",
                      order_of_images=ImageReferences(name="order_of_images", data=images))
    nwb.add_stimulus_template(template)
    nwb.add_stimulus(IndexSeries(name="stimulus_index", data=index.ravel().astype(np.uint32), unit="N/A",
                                 indexed_images=template, timestamps=times, description="frame shown at each flip"))


def _behaviour(nwb, tables) -> None:
    from pynwb import TimeSeries
    from pynwb.behavior import EyeTracking, PupilTracking, SpatialSeries

    module = nwb.create_processing_module("behavior", "running and eye tracking")
    for table in tables:
        ch = table.channels
        if "running" in ch:
            module.add(TimeSeries(name="running_speed", data=ch["running"], unit="cm/s", timestamps=table.times))
        if "pupil" in ch:
            module.add(PupilTracking(name="PupilTracking", time_series=[
                TimeSeries(name="pupil_size", data=ch["pupil"], unit="a.u.", timestamps=table.times)]))
        if "pupil_x" in ch and "pupil_y" in ch:
            module.add(EyeTracking(name="EyeTracking", spatial_series=[SpatialSeries(
                name="pupil_position", data=np.c_[ch["pupil_x"], ch["pupil_y"]], reference_frame="screen centre",
                unit="a.u.", timestamps=table.times)]))


def _planes(nwb, traces, imaging_times: np.ndarray, raw_stack) -> None:
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel, RoiResponseSeries, TwoPhotonSeries

    device = nwb.create_device(name="microscope", description="two-photon microscope")
    ophys = nwb.create_processing_module("ophys", "extracted ROIs") if traces else None
    segmentation = ImageSegmentation(name="ImageSegmentation") if traces else None
    if ophys is not None:
        ophys.add(segmentation)
    n_planes = len(traces) if traces else raw_stack.n_planes
    for p in range(n_planes):
        plane_traces = traces[p] if traces else None
        offset = plane_traces.plane_offset if plane_traces is not None else 0.0
        plane = nwb.create_imaging_plane(
            name=f"ImagingPlane_plane{p}", optical_channel=OpticalChannel(name="green", description="GCaMP",
                                                                          emission_lambda=510.0),
            description=f"plane {p}", device=device, excitation_lambda=920.0, indicator="GCaMP",
            location="V1", imaging_rate=float(1.0 / np.median(np.diff(imaging_times))))
        if raw_stack is not None:
            nwb.add_acquisition(TwoPhotonSeries(name=f"TwoPhotonSeries_plane{p}", imaging_plane=plane, unit="a.u.",
                                                data=np.asarray(raw_stack.movie(p)), timestamps=imaging_times + offset))
        if plane_traces is None:
            continue
        rois = segmentation.create_plane_segmentation(name=f"PlaneSegmentation_plane{p}", description="cells",
                                                      imaging_plane=plane)
        for mask in plane_traces.roi_masks:
            rois.add_roi(pixel_mask=list(zip(mask.xpix.tolist(), mask.ypix.tolist(), mask.weights.tolist())))
        region = rois.create_roi_table_region("the cells", region=list(range(plane_traces.n_cells)))
        container = Fluorescence(name=f"Fluorescence_plane{p}")
        ophys.add(container)
        for name, values in (("Fluorescence", plane_traces.F), ("Neuropil", plane_traces.Fneu),
                             ("Deconvolved", plane_traces.spks)):
            container.add_roi_response_series(RoiResponseSeries(
                name=name, data=np.asarray(values, np.float32).T, rois=region, unit="a.u.",
                timestamps=imaging_times + offset))
        ophys.add(Images(name=f"images_plane{p}", images=[GrayscaleImage(
            name="mean_image", data=np.asarray(plane_traces.mean_image, np.float32))], description="mean image"))


def write_session_nwb(manifest_path, target, traces=None, *, raw: bool = True, subject: dict | None = None) -> Path:
    """Write the session a manifest describes (with its extracted ``traces``, one per plane) as NWB."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject

    from ..align import TrialTable
    from .daq import session_behaviour, session_times
    from .manifest import load_manifest
    from .movies import read_stimulus_movie

    manifest = load_manifest(manifest_path)
    movie = read_stimulus_movie(manifest.stimulus_movie, size=manifest.stimulus_size)
    times = session_times(manifest, n_imaging_frames=traces[0].n_frames if traces else None, n_movie_frames=movie.n_frames)
    raw_stack = None
    if raw and manifest.raw:
        from .tiff import read_raw_stack

        raw_stack = read_raw_stack(manifest.raw, frame_rate=manifest.imaging_frame_rate)
    if not traces and raw_stack is None:
        raise InputError("nothing to write for the imaging: give traces or raw=True with raw files", manifest.path)
    nwb = NWBFile(session_description=f"{manifest.name}, written from {manifest.path.name}", identifier=manifest.name,
                  session_id=manifest.name, session_start_time=datetime(1970, 1, 1, tzinfo=timezone.utc),
                  subject=Subject(**(subject or {"subject_id": "unknown", "species": "Mus musculus", "sex": "U"})))
    _planes(nwb, traces, times.imaging, raw_stack)
    _stimulus(nwb, movie.frames, times.stimulus)
    trials = TrialTable.read_csv(manifest.trials)
    ends = np.append(times.stimulus[1:], times.stimulus[-1] + np.median(np.diff(times.stimulus)))
    nwb.add_trial_column("tier", "train, validation or test")
    nwb.add_trial_column("trial_id", "the trial's id in the manifest's trial table")
    for trial_id, start, n, tier in zip(trials.trial_ids, trials.start_frames, trials.n_frames, trials.tiers):
        nwb.add_trial(start_time=times.stimulus[start], stop_time=ends[start + n - 1], tier=str(tier), trial_id=int(trial_id))
    _behaviour(nwb, session_behaviour(manifest, times)[0])
    target = Path(target)
    with atomic_path(target) as tmp:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return target
