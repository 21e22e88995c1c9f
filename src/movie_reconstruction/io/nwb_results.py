"""Write a results folder as a new NWB file that references the session it came from.

- each reconstructed trial's stimulus (``stimulus/presentation/stimulus_trial_{id}``) and
  reconstruction (``processing/movie_reconstruction/reconstruction_trial_{id}``) as
  ``ImageSeries`` in grey levels 0..255, with the trial's frame times on the session clock
  (from the source NWB file or manifest; without one, each trial starts at 0 s and the file says so);
- the transparency mask and the ROI label and mean images as ``GrayscaleImage``s
  (``processing/movie_reconstruction/masks``);
- the per-trial metrics and the controls as tables.

The source file is never opened for writing: its path, SHA-256 and (NWB) identifier go into
the new file's ``notes`` and ``source_script``, and its session start time is reused.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import InputError

MODULE = "movie_reconstruction"


def trial_frame_times(source) -> tuple[dict[int, np.ndarray], dict]:
    """``({trial_id: stimulus frame times}, {what the source is})`` from an NWB file or a session manifest."""
    from ..results import file_sha256

    source = Path(source)
    about = {"source": str(source.resolve()), "sha256": file_sha256(source) if source.is_file() else None}
    if source.suffix.lower() == ".nwb":
        from .nwb import read_nwb

        session = read_nwb(source, size=None)
        times, trials = session.stimulus_times, session.trials
        about.update(identifier=_nwb_identity(source))
    else:
        from ..align import TrialTable
        from .daq import session_times
        from .manifest import load_manifest

        manifest = load_manifest(source)
        times = session_times(manifest, n_imaging_frames=None, n_movie_frames=None).stimulus
        trials = TrialTable.read_csv(manifest.trials)
    if trials is None or times is None:
        raise InputError("the source has no trials or no stimulus frame times", source)
    table = {int(t): times[s : s + n] for t, s, n in zip(trials.trial_ids, trials.start_frames, trials.n_frames)}
    return table, about


def _nwb_identity(path: Path) -> dict:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        subject = nwb.subject
        fields = ("subject_id", "species", "sex", "age", "strain", "genotype", "description")
        return {"identifier": nwb.identifier, "session_start_time": nwb.session_start_time.isoformat(),
                "subject": {f: getattr(subject, f) for f in fields if getattr(subject, f, None)} if subject else None}


def _movie(name: str, frames: np.ndarray, times: np.ndarray | None, rate: float, what: str):
    from pynwb.image import ImageSeries

    frames = np.asarray(frames, np.float32)
    timing = {"timestamps": np.asarray(times, np.float64)} if times is not None else {"rate": float(rate), "starting_time": 0.0}
    return ImageSeries(name=name, data=frames, unit="grey level (0-255)", description=what, **timing)


def _table(name: str, description: str, rows: list[dict]):
    from hdmf.common import DynamicTable

    table = DynamicTable(name=name, description=description)
    if not rows:
        return table
    columns = list(rows[0])
    for column in columns:
        table.add_column(column, column.replace("_", " "))
    for row in rows:
        table.add_row({c: _cell(row.get(c), rows, c) for c in columns})
    return table


def _cell(value, rows, column):
    """Table cells of one column share a type: numbers stay numbers (NaN for missing), the rest text."""
    numeric = all(isinstance(r.get(column), (int, float, np.number, type(None))) and not isinstance(r.get(column), bool)
                  for r in rows)
    if numeric:
        return float("nan") if value is None else float(value)
    return "" if value is None else (json.dumps(value) if isinstance(value, (list, dict)) else str(value))


def _images(results):
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage

    images = []
    if results.mask is not None:
        images.append(GrayscaleImage(name="transparency_mask", data=np.asarray(results.mask, np.float32),
                                     description="where the reconstruction is scored (0..1)"))
    for plane, arrays in sorted(results.rois.items()):
        if "labels" in arrays:
            images.append(GrayscaleImage(name=f"roi_labels_plane{plane}", data=np.asarray(arrays["labels"], np.int32),
                                         description="0 background, ROI row k is k + 1"))
        if "mean_image" in arrays:
            images.append(GrayscaleImage(name=f"mean_image_plane{plane}", data=np.asarray(arrays["mean_image"], np.float32),
                                         description="mean imaging frame"))
    return Images(name="masks", images=images, description="the reconstruction mask and the ROIs") if images else None


def write_results_nwb(results_path, target, *, source=None, subject: dict | None = None) -> Path:
    """Write the results folder ``results_path`` as the NWB file ``target`` (atomically).

    ``source``: the session's NWB file or manifest, for the session clock (see module docstring).
    ``subject``: pynwb ``Subject`` fields; by default the source NWB file's subject, else an
    unknown mouse (``species="Mus musculus"``, ``sex="U"``).
    """
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject

    from .. import __version__
    from ..results import load_results

    results = load_results(results_path)
    target = Path(target)
    if source is not None and target.resolve() == Path(source).resolve():
        raise InputError("the results file would replace its source; choose another name", target)
    times, about = trial_frame_times(source) if source is not None else ({}, {"source": None})
    if source is None:
        about["note"] = "no source given: each trial's frame times start at 0 s, not on the session clock"
    start = about.get("identifier", {}).get("session_start_time")
    nwb = NWBFile(
        session_description=f"movie reconstructions from {results.path.name}",
        identifier=f"movie-reconstruction-{results.path.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}",
        session_start_time=datetime.fromisoformat(start) if start else datetime.now(timezone.utc),
        source_script=f"napari-movie-reconstruction {__version__} (movie_reconstruction.io.nwb_results)",
        source_script_file_name="movie_reconstruction/io/nwb_results.py",
        notes=json.dumps({"results_folder": str(results.path.resolve()), **about}),
        subject=Subject(**(subject or about.get("identifier", {}).get("subject") or
                           {"subject_id": "unknown", "species": "Mus musculus", "sex": "U",
                            "description": "not recorded in the source"})),
    )
    module = nwb.create_processing_module(MODULE, "movie reconstructions from recorded activity")
    rate = float(results.provenance.get("frame_rate") or 30.0)
    for trial in results.trials:
        trial_times = times.get(trial.trial_id)
        if trial_times is not None and trial_times.size != trial.n_frames:
            raise InputError(f"trial {trial.trial_id} has {trial.n_frames} frames but the source has {trial_times.size}", source)
        nwb.add_stimulus(_movie(f"stimulus_trial_{trial.trial_id}", trial.stimulus, trial_times, rate,
                                f"stimulus shown in trial {trial.trial_id} ({trial.tier}), at the model's frame size"))
        module.add(_movie(f"reconstruction_trial_{trial.trial_id}", trial.reconstruction, trial_times, rate,
                          f"reconstruction of trial {trial.trial_id} from {trial.members} model(s)"))
    images = _images(results)
    if images is not None:
        module.add(images)
    rows = [{"trial_id": t.trial_id, "tier": t.tier, "correlation": t.correlation, "ssim": t.ssim,
             "members": t.members, "frames": t.n_frames} for t in results.trials]
    module.add(_table("metrics", "per reconstructed trial: masked correlation and SSIM", rows))
    if results.controls and results.controls.get("rows"):
        module.add(_table("controls", "the reconstruction against its controls", results.controls["rows"]))
    with atomic_path(target) as tmp:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return target
