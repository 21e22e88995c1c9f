"""Run suite2p 1.x on a raw two-photon stack and return one :class:`~movie_reconstruction.traces.Traces` per plane.

``extract_traces`` checks its input and settings, then returns a job generator (see
:mod:`movie_reconstruction.progress`): it yields ``Progress`` events translated from suite2p's
own log (conversion, registration, detection, extraction, deconvolution, classification) and
returns ``list[Traces]``. Closing the generator cancels the run at the next stage boundary.

Output layout, inside the folder the user picks::

    output_dir/suite2p/            a finished run, readable by the suite2p GUI and by
                                   io.suite2p_folder.read_suite2p_folder
    output_dir/suite2p/movie_recon_run.json      what produced it (input fingerprint, settings)
    output_dir/.suite2p.partial/   an unfinished run (cancelled or crashed), with the same marker
                                   listing its finished stages; a re-run with the same input and
                                   settings resumes from it, any other run discards it.

The finished folder only appears by a rename once every plane is done, so a cancelled run never
leaves a half-written ``suite2p`` folder. The raw input is only ever opened for reading; suite2p
works on its own int16 binary (``plane*/data.bin``) inside the output folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _atomic
from ._json import jsonable
from .errors import InputError
from .io.safe_npy import load_record
from .io.tiff import pages_to_frames
from .progress import Job, Progress
from .traces import Traces

RUN_MARKER = "movie_recon_run.json"
FINAL_FOLDER = "suite2p"
STAGING_FOLDER = ".suite2p.partial"
MARKER_VERSION = 1

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")

# suite2p announces each stage of ``pipeline`` with a line of dashes and the stage name.
_STAGE_BANNERS = {
    "REGISTRATION": "registration",
    "ROI DETECTION": "detection",
    "EXTRACTION": "extraction",
    "SPIKE DECONVOLUTION": "deconvolution",
    "ROI CLASSIFICATION": "classification",
    "ZSTACK ALIGN": "zstack",
}
_BANNER = re.compile(r"^-{5,}\s+([A-Z][A-Z ]+?)\s*$")
_TQDM_COUNT = re.compile(r"(\d+)/(\d+)\s*\[")


class ExtractionCancelled(Exception):
    """Raised inside suite2p's thread, at a stage boundary, when the job was cancelled."""


# --------------------------------------------------------------------------------------------
# settings


def suite2p_settings(
    *,
    fs: float = 10.0,
    tau: float = 1.0,
    diameter: float | Sequence[float] = 12.0,
    threshold_scaling: float = 1.0,
    do_registration: bool = True,
    nonrigid: bool | None = None,
    device: str = "cpu",
    overrides: dict | None = None,
) -> dict:
    """A complete suite2p 1.x settings dict: ``suite2p.default_settings()`` changed in place.

    ``overrides`` is a nested dict with the same layout as suite2p's settings (e.g.
    ``{"detection": {"sparsery_settings": {"highpass_neuropil": 10}}}``); each leaf replaces
    the default, and a key suite2p does not know raises :class:`InputError` instead of being
    silently dropped.
    """
    import suite2p

    settings = suite2p.default_settings()
    settings["fs"] = float(fs)
    settings["tau"] = float(tau)
    diameters = np.atleast_1d(np.asarray(diameter, dtype=float))
    if diameters.size == 1:
        diameters = np.repeat(diameters, 2)
    if diameters.size != 2 or np.any(diameters <= 0):
        raise InputError(f"diameter must be one positive number or (dy, dx), got {diameter!r}")
    settings["diameter"] = [float(diameters[0]), float(diameters[1])]
    settings["detection"]["threshold_scaling"] = float(threshold_scaling)
    settings["run"]["do_registration"] = int(bool(do_registration))
    if nonrigid is not None:
        settings["registration"]["nonrigid"] = bool(nonrigid)
    settings["torch_device"] = str(device)
    if fs <= 0 or tau <= 0:
        raise InputError(f"fs and tau must be positive, got fs={fs!r}, tau={tau!r}")
    if overrides:
        _merge_known(settings, overrides, "settings")
    return settings


def small_fov_overrides(diameter: float = 6.0) -> dict:
    """Settings for a small, low-resolution field of view (tens of pixels across, cells of ``diameter`` px).

    suite2p's defaults assume ~512x512 frames with ~12-px cells. On a frame of a few dozen
    pixels its non-rigid registration blocks (128x128) do not fit, the ring of 350 neuropil
    pixels covers a large part of the frame, and sparsery's automatic estimate of the cell
    size can go wrong (it estimated 24 px for 5-px cells on a 40x48 test stack), so we set the
    spatial scale from ``diameter``: suite2p's scales 1, 2, 3, 4 mean cells of ~6, 12, 24, 48 px.
    Pass the result as ``settings=`` to :func:`extract_traces`; see docs/extraction.md.
    """
    scale = int(np.clip(np.round(np.log2(max(float(diameter), 1e-6) / 3.0)), 1, 4))
    return {
        "registration": {"nonrigid": False},
        "detection": {"sparsery_settings": {"spatial_scale": scale}},
        "extraction": {"min_neuropil_pixels": 100},
    }


def _merge_known(target: dict, changes: dict, where: str) -> None:
    for key, value in changes.items():
        if key not in target:
            known = ", ".join(sorted(map(str, target)))
            raise InputError(f"unknown suite2p setting {where}[{key!r}]; known keys: {known}")
        if isinstance(target[key], dict) and isinstance(value, dict):
            _merge_known(target[key], value, f"{where}[{key!r}]")
        else:
            target[key] = copy.deepcopy(value)


def _pick_torch_device(preference: str | None):
    """CUDA when present (or asked for), else CPU: suite2p's own default is CUDA, which fails on CPU
    machines, and suite2p is not made for MPS, so "auto" does not pick it."""
    import torch

    from .device import pick_device

    device = pick_device(preference)
    if preference in (None, "", "auto") and device.type == "mps":
        return torch.device("cpu")
    return device


# --------------------------------------------------------------------------------------------
# input: file paths, a folder, or an in-memory array, read in chunks of frames


@dataclass
class _Stack:
    """A raw stack as ``(frames, planes, channels, Y, X)`` (a lazy dask array or a numpy view), read in chunks."""

    description: str
    data: Any
    frame_rate: float | None
    fingerprint: dict
    data_path: str

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_planes(self) -> int:
        return int(self.data.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[2])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.data.shape[3]), int(self.data.shape[4])

    def chunks(self, frames: int) -> Iterator[np.ndarray]:
        for start in range(0, self.n_frames, frames):
            block = self.data[start:start + frames]
            if hasattr(block, "compute"):
                block = block.compute(scheduler="synchronous")
            yield np.asarray(block)


def _open_stack(source, h5_key: str | None, fs: float | None, nplanes: int | None, nchannels: int | None) -> _Stack:
    """Wrap ``source`` (files, folder, RawStack or array) with the lead's lazy readers."""
    from natsort import natsorted

    from .io.tiff import TIFF_SUFFIXES, RawStack, read_raw_stack

    if isinstance(source, RawStack):
        return _raw_stack(source, source.paths, h5_key)
    if not isinstance(source, (str, os.PathLike)) and hasattr(source, "shape") and hasattr(source, "dtype"):
        return _array_stack(source, fs, nplanes or 1, nchannels or 1)

    paths = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
    if not paths:
        raise InputError("no input files were given")
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = natsorted(
                (p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES + HDF5_SUFFIXES), key=lambda p: p.name
            )
            if not found:
                raise InputError("folder holds no TIFF or HDF5 files", path)
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise InputError("file not found", path)
    kinds = {"tiff" if f.suffix.lower() in TIFF_SUFFIXES else "hdf5" if f.suffix.lower() in HDF5_SUFFIXES else f.suffix for f in files}
    if kinds == {"tiff"}:
        raw = read_raw_stack(files, frame_rate=fs, n_planes=nplanes, n_channels=nchannels)
        return _raw_stack(raw, files, None)
    if kinds == {"hdf5"}:
        import dask.array as da

        from .io.hdf5 import read_h5_stack

        raws = [read_h5_stack(f, h5_key, frame_rate=fs) for f in files]
        pages = da.concatenate([r.data[:, 0, 0] for r in raws], axis=0)
        raw = RawStack(
            data=pages[:, None, None], paths=files, frame_rate=fs, n_planes=1, n_channels=1,
            metadata=raws[0].metadata,
        )
        return _raw_stack(raw, files, raws[0].metadata.get("hdf5_key"), nplanes or 1, nchannels or 1)
    bad = next(f for f in files if f.suffix.lower() not in TIFF_SUFFIXES + HDF5_SUFFIXES) if any(
        f.suffix.lower() not in TIFF_SUFFIXES + HDF5_SUFFIXES for f in files) else files[0]
    raise InputError("expected TIFF or HDF5 files, not a mix or another type", bad)


def _raw_stack(raw, files, key, nplanes: int | None = None, nchannels: int | None = None) -> _Stack:
    data = raw.data
    if nplanes or nchannels:  # HDF5 stores pages: regroup them as frames of planes x channels
        data = pages_to_frames(data[:, 0, 0], nplanes or 1, nchannels or 1, files[0])
    fingerprints = []
    for path in files:
        stat = Path(path).stat()
        fingerprints.append({"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "key": key})
    return _Stack(
        description=", ".join(Path(p).name for p in files[:3]) + (" ..." if len(files) > 3 else ""),
        data=data,
        frame_rate=raw.frame_rate,
        fingerprint={"files": fingerprints},
        data_path=str(Path(files[0]).resolve().parent),
    )


def _array_stack(array, fs: float | None, nplanes: int, nchannels: int) -> _Stack:
    if array.ndim != 3:
        raise InputError(f"an in-memory stack must be (frames, height, width) in acquisition order, got shape {tuple(array.shape)}")
    digest = hashlib.blake2b(digest_size=16)
    for start in range(0, array.shape[0], 256):
        digest.update(np.ascontiguousarray(np.asarray(array[start:start + 256])).tobytes())
    return _Stack(
        description=f"array {tuple(array.shape)} {array.dtype}",
        data=pages_to_frames(array, nplanes, nchannels, None),
        frame_rate=fs,
        fingerprint={"array": {"shape": list(array.shape), "dtype": str(array.dtype), "blake2b": digest.hexdigest()}},
        data_path="",
    )


# --------------------------------------------------------------------------------------------
# the run marker: what produced a folder, and which stages are finished


def _run_identity(stack: _Stack, settings: dict, nplanes: int, nchannels: int, functional_channel: int) -> dict:
    compared = copy.deepcopy(settings)
    compared.pop("torch_device", None)  # the same run on another device is the same run
    return {
        "input": stack.fingerprint,
        "settings": jsonable(compared),
        "layout": {"nplanes": nplanes, "nchannels": nchannels, "functional_channel": functional_channel},
    }


def _read_marker(folder: Path) -> dict | None:
    path = folder / RUN_MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_marker(folder: Path, identity: dict, stages: dict, complete: bool) -> None:
    marker = {"version": MARKER_VERSION, "identity": identity, "stages": stages, "complete": complete}
    _atomic.write_text(folder / RUN_MARKER, json.dumps(marker, indent=1))


def _same_identity(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# --------------------------------------------------------------------------------------------
# suite2p's log -> progress events, with cancellation at stage boundaries


class _LogRelay(logging.Handler):
    """Forwards suite2p's log records from one worker thread onto a queue.

    When the job is cancelled, the next stage banner raises ExtractionCancelled in that
    thread: suite2p has saved the previous stage's files by then, and the next stage
    has not started writing.
    """

    def __init__(self, events: queue.Queue, cancel: threading.Event):
        super().__init__(level=logging.INFO)
        self.events = events
        self.cancel = cancel
        self.thread_id: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed suite2p log call must not break the run
            return
        banner = _BANNER.match(message)
        if banner and banner.group(1) in _STAGE_BANNERS and self.cancel.is_set():
            raise ExtractionCancelled(banner.group(1))
        self.events.put(("log", message))


def _run_in_thread(target, relay: _LogRelay, events: queue.Queue, stage_of: dict, plan: dict) -> Iterator[Progress]:
    """Run ``target()`` in a thread, yielding Progress events from suite2p's log until it ends.

    Closing the generator sets the cancel flag and waits for suite2p to reach its next stage
    boundary (where the relay raises) or to finish, so no file is left half-written.
    """
    result: dict[str, Any] = {}

    def work():
        relay.thread_id = threading.get_ident()
        try:
            result["value"] = target()
        except BaseException as exc:  # re-raised in the generator's thread
            result["error"] = exc
        finally:
            events.put(("done", None))

    thread = threading.Thread(target=work, name="suite2p", daemon=True)
    thread.start()
    try:
        while True:
            kind, message = events.get()
            if kind == "done":
                break
            banner = _BANNER.match(message)
            if banner and banner.group(1) in _STAGE_BANNERS:
                stage_of["stage"] = _STAGE_BANNERS[banner.group(1)]
                plan["step"] += 1
                yield Progress(stage_of["stage"], plan["step"], plan["total"], f"plane {plan['plane']}: {stage_of['stage']}")
                continue
            if message.startswith("-----------"):
                continue
            count = _TQDM_COUNT.search(message)
            metrics = {"batch": float(count.group(1)), "batches": float(count.group(2))} if count else {}
            yield Progress(stage_of["stage"], plan["step"], plan["total"], f"plane {plan['plane']}: {message.strip()}", metrics)
    except BaseException:
        relay.cancel.set()
        thread.join()
        raise
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


# --------------------------------------------------------------------------------------------
# the job


# long: a 14-argument signature and its docstring; the body is the reuse / resume / publish sequence,
# whose steps are already helpers.
def extract_traces(
    source,
    output_dir: str | Path,
    *,
    fs: float | None = None,
    tau: float = 1.0,
    diameter: float | Sequence[float] = 12.0,
    nplanes: int | None = None,
    nchannels: int | None = None,
    functional_channel: int = 1,
    threshold_scaling: float = 1.0,
    do_registration: bool = True,
    nonrigid: bool | None = None,
    cell_threshold: float | None = 0.5,
    device: str | None = "auto",
    settings: dict | None = None,
    h5_key: str | None = None,
    overwrite: bool = False,
) -> Job[list[Traces]]:
    """Run suite2p on a raw stack; the job yields :class:`Progress` and returns one :class:`Traces` per plane.

    ``source``: a TIFF/HDF5 file, a list of them (concatenated in order), a folder of them
    (natural sort order), a :class:`~movie_reconstruction.io.tiff.RawStack`, or an array
    ``(frames, height, width)`` in acquisition order (with several planes/channels the frames
    interleave as plane 0 channel 1, plane 0 channel 2, plane 1 channel 1, ...).

    ``fs`` is the volume rate per plane (Hz; taken from ScanImage metadata when not given),
    ``tau`` the indicator decay time (s; ~0.7 for GCaMP6f, 1.0-1.5 for GCaMP6s), ``diameter``
    the expected cell diameter in pixels, ``threshold_scaling`` suite2p's detection threshold
    (higher finds fewer ROIs), ``nonrigid`` non-rigid registration (default: suite2p's, i.e. on,
    unless the frame is smaller than its blocks), ``cell_threshold`` the classifier probability
    a ROI needs to be kept (``None``: suite2p's own ``iscell`` decision). ``settings`` is a
    nested dict of further suite2p settings (see :func:`suite2p_settings`,
    :func:`small_fov_overrides`). ``device``: ``"auto"`` (CUDA when present, else CPU),
    ``"cpu"`` or ``"cuda"``.

    Results go to ``output_dir/suite2p``. If that folder already holds the same run (same
    input, same settings) it is loaded without recomputing; if it holds anything else this
    raises :class:`InputError` unless ``overwrite=True``. An unfinished run of the same input
    and settings is resumed from its finished stages. Input and settings are checked here,
    before the job starts, so bad input fails at once.
    """
    for name, value in (("nplanes", nplanes), ("nchannels", nchannels)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    output_dir = Path(output_dir)
    stack = _open_stack(source, h5_key, fs, nplanes, nchannels)
    if nplanes is not None and stack.n_planes != nplanes or nchannels is not None and stack.n_channels != nchannels:
        raise InputError(
            f"{stack.description}: the stack has {stack.n_planes} plane(s) x {stack.n_channels} channel(s), "
            f"but nplanes={nplanes}, nchannels={nchannels} were asked for"
        )
    if stack.n_channels > 2 or not 1 <= functional_channel <= stack.n_channels:
        raise InputError(
            f"{stack.description}: suite2p takes 1 or 2 channels and functional_channel between 1 and the channel "
            f"count; got {stack.n_channels} channel(s), functional_channel={functional_channel}"
        )
    fs = fs if fs is not None else stack.frame_rate
    if fs is None:
        raise InputError(f"{stack.description}: the frame rate is not in the file; pass fs (volume rate per plane, Hz)")
    for part in stack.fingerprint.get("files", []):
        for ours in (output_dir / FINAL_FOLDER, output_dir / STAGING_FOLDER):
            if Path(part["path"]).resolve().is_relative_to(ours.resolve()):
                raise InputError(f"raw input lies inside the output folder {ours}, which a run replaces", part["path"])
    if stack.n_frames < 10:
        raise InputError(f"{stack.description}: {stack.n_frames} frames per plane is too few for suite2p (needs >= 10)")

    torch_device = _pick_torch_device(device)
    s2p_settings = suite2p_settings(
        fs=fs, tau=tau, diameter=diameter, threshold_scaling=threshold_scaling,
        do_registration=do_registration, nonrigid=nonrigid, device=torch_device.type, overrides=settings,
    )
    explicit_nonrigid = nonrigid is not None or _sets(settings, "registration", "nonrigid")
    notes = _fit_settings_to_frame(s2p_settings, stack.frame_shape, explicit_nonrigid)
    identity = _run_identity(stack, s2p_settings, stack.n_planes, stack.n_channels, functional_channel)

    final = output_dir / FINAL_FOLDER
    existing = _read_marker(final) if final.exists() else None
    reuse = bool(existing and existing.get("complete") and _same_identity(existing["identity"], identity) and not overwrite)
    if final.exists() and not reuse and not overwrite:
        what = "a different run (other input or settings)" if existing else "a suite2p folder this tool did not write"
        raise InputError(
            f"holds {what}; choose another output folder, load it with read_suite2p_folder, or pass overwrite=True",
            final,
        )
    return _extract_job(stack, output_dir, s2p_settings, identity, functional_channel, torch_device, cell_threshold, notes, reuse)


def _extract_job(stack, output_dir, s2p_settings, identity, functional_channel, torch_device, cell_threshold, notes, reuse):
    final = output_dir / FINAL_FOLDER
    staging_root = output_dir / STAGING_FOLDER
    staging = staging_root / FINAL_FOLDER
    if reuse:
        yield Progress("reuse", 1, 1, f"{final} already holds this run; loading it")
        return _load_results(final, cell_threshold)

    for note in notes:
        yield Progress("settings", 0, None, note)

    marker = _read_marker(staging) if staging.exists() else None
    if marker is not None and _same_identity(marker["identity"], identity):
        stages = marker["stages"]
        if any("registration started" in d and "registration" not in d for d in stages["planes"].values()):
            stages["conversion"] = False  # a registration was interrupted mid-way: its binary is unusable
        yield Progress("resume", 0, None, f"resuming the unfinished run in {staging_root} (done: {_describe_stages(stages)})")
    else:
        if staging_root.exists():
            yield Progress("resume", 0, None, f"discarding an unfinished run of other input or settings in {staging_root}")
            shutil.rmtree(staging_root)
        stages = {"conversion": False, "planes": {}}
    staging.mkdir(parents=True, exist_ok=True)

    if not stages["conversion"]:
        stages["planes"] = {}
        yield from _convert(stack, staging, s2p_settings, functional_channel)
        stages["conversion"] = True
        _write_marker(staging, identity, stages, complete=False)

    yield from _run_planes(staging, s2p_settings, stack.n_planes, torch_device, identity, stages)

    for plane in range(stack.n_planes):
        _relocate_paths(staging / f"plane{plane}", staging, final)
    _relocate_paths(staging, staging, final)
    _write_marker(staging, identity, stages, complete=True)
    _publish(staging, final, staging_root)
    yield Progress("done", 1, 1, f"suite2p output in {final}")
    return _load_results(final, cell_threshold)


def _sets(settings: dict | None, section: str, key: str) -> bool:
    return bool(settings) and isinstance(settings.get(section), dict) and key in settings[section]


def _fit_settings_to_frame(settings: dict, frame_shape: tuple[int, int], explicit_nonrigid: bool) -> list[str]:
    """suite2p 1.1's non-rigid registration fails when the frame holds a single block along
    either axis (a 128-px block on a frame of 128 px or less); fall back to rigid, and say so."""
    from suite2p.registration.nonrigid import make_blocks

    notes = []
    reg = settings["registration"]
    block = tuple(int(b) for b in reg["block_size"])
    if reg["nonrigid"]:
        nblocks = make_blocks(frame_shape[0], frame_shape[1], block_size=block)[2]
        if min(nblocks) < 2:
            if explicit_nonrigid:
                raise InputError(
                    f"non-rigid registration needs at least 2 blocks per axis, and {block}-px blocks on a "
                    f"{frame_shape} frame give {tuple(nblocks)}; set registration.block_size smaller or use nonrigid=False"
                )
            reg["nonrigid"] = False
            notes.append(
                f"frame {frame_shape} fits only {tuple(nblocks)} non-rigid blocks of {block} px: using rigid registration"
            )
    return notes


def _describe_stages(stages: dict) -> str:
    done = ["conversion"] if stages.get("conversion") else []
    for plane, plane_stages in sorted(stages.get("planes", {}).items()):
        done += [f"{plane} {s}" for s in plane_stages]
    return ", ".join(done) or "nothing"


def _plane_db(staging: Path, stack: _Stack, plane: int, nplanes: int, nchannels: int, functional_channel: int) -> dict:
    import suite2p

    db = suite2p.default_db()
    plane_dir = staging / f"plane{plane}"
    db.update(
        data_path=[stack.data_path] if stack.data_path else [],
        file_list=[f["path"] for f in stack.fingerprint.get("files", [])] or None,
        input_format="movie_recon",
        save_path0=str(staging.parent),
        save_folder=staging.name,
        fast_disk=str(plane_dir),
        save_path=str(plane_dir),
        settings_path=str(plane_dir / "settings.npy"),
        db_path=str(plane_dir / "db.npy"),
        reg_file=str(plane_dir / "data.bin"),
        nplanes=nplanes,
        nchannels=nchannels,
        functional_chan=functional_channel,
        keep_movie_raw=False,
        iplane=plane,
        Ly=stack.frame_shape[0],
        Lx=stack.frame_shape[1],
    )
    if nchannels > 1:
        db["reg_file_chan2"] = str(plane_dir / "data_chan2.bin")
    return db


def _convert(stack: _Stack, staging: Path, settings: dict, functional_channel: int) -> Iterator[Progress]:
    """Write suite2p's int16 binaries (one per plane and channel) into the staging folder."""
    nplanes, nchannels = stack.n_planes, stack.n_channels
    dbs = [_plane_db(staging, stack, plane, nplanes, nchannels, functional_channel) for plane in range(nplanes)]
    for db in dbs:
        Path(db["save_path"]).mkdir(parents=True, exist_ok=True)
    sums = np.zeros((nplanes, nchannels, *stack.frame_shape), np.float64)
    other_channel = 2 - functional_channel  # index of the non-functional channel when there are two
    clipped = 0
    handles = [open(db["reg_file"], "wb") for db in dbs]
    handles2 = [open(db["reg_file_chan2"], "wb") for db in dbs] if nchannels > 1 else []
    written = 0
    batch = max(1, 500 // (nplanes * nchannels))
    try:
        yield Progress("conversion", 0, stack.n_frames, f"writing suite2p binaries from {stack.description}")
        for chunk in stack.chunks(batch):
            if not np.issubdtype(chunk.dtype, np.integer):
                if not np.isfinite(chunk).all():
                    raise InputError(f"{stack.description}: frames {written}..{written + len(chunk)} contain NaN/inf")
                chunk = np.rint(chunk)
            if chunk.dtype != np.int16:
                clipped += int(np.count_nonzero((chunk > 32767) | (chunk < -32768)))
                chunk = np.clip(chunk, -32768, 32767).astype(np.int16)
            for plane in range(nplanes):
                handles[plane].write(np.ascontiguousarray(chunk[:, plane, functional_channel - 1]).tobytes())
                if nchannels > 1:
                    handles2[plane].write(np.ascontiguousarray(chunk[:, plane, other_channel]).tobytes())
            sums += chunk.sum(axis=0, dtype=np.float64)
            written += len(chunk)
            yield Progress("conversion", written, stack.n_frames, f"{written}/{stack.n_frames} frames")
    finally:
        for handle in handles + handles2:
            handle.close()
    if clipped:
        yield Progress("conversion", written, stack.n_frames, f"warning: {clipped} pixel values outside the int16 range were clipped")
    for plane, db in enumerate(dbs):
        db["nframes"] = written
        db["meanImg"] = (sums[plane, functional_channel - 1] / written).astype(np.float32)
        if nchannels > 1:
            db["meanImg_chan2"] = (sums[plane, other_channel] / written).astype(np.float32)
        np.save(db["db_path"], db)
        np.save(db["settings_path"], settings)
    root_db = {k: v for k, v in dbs[0].items() if k not in ("meanImg", "meanImg_chan2")}
    np.save(staging / "db.npy", root_db)
    np.save(staging / "settings.npy", settings)


def _run_planes(staging: Path, settings: dict, nplanes: int, torch_device, identity: dict, stages: dict) -> Iterator[Progress]:
    import suite2p
    from suite2p.io import BinaryFile

    s2p_logger = logging.getLogger("suite2p")
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()
    relay = _LogRelay(events, cancel)
    old_level = s2p_logger.level
    if s2p_logger.getEffectiveLevel() > logging.INFO:
        s2p_logger.setLevel(logging.INFO)
    s2p_logger.addHandler(relay)
    per_plane = (1 if settings["run"]["do_registration"] else 0) + 4  # + detection, extraction, deconvolution, classification
    plan = {"step": 0, "total": nplanes * per_plane, "plane": 0}
    stage_of = {"stage": "registration"}
    try:
        for plane in range(nplanes):
            plan["plane"] = plane
            done = stages["planes"].setdefault(f"plane{plane}", [])
            if "complete" in done:
                plan["step"] += per_plane
                continue
            plane_dir = staging / f"plane{plane}"
            db = load_record(plane_dir / "db.npy")  # a resumed folder may come from elsewhere: data only
            plane_settings = copy.deepcopy(settings)

            if settings["run"]["do_registration"] and "registration" not in done:
                registration_only = copy.deepcopy(plane_settings)
                registration_only["run"]["do_detection"] = False
                # suite2p registers data.bin in place: until registration has finished, the
                # binary is neither raw nor registered, so a resumed run must rewrite it.
                done.append("registration started")
                _write_marker(staging, identity, stages, complete=False)

                def register():
                    _pipeline(db, registration_only, True, torch_device, BinaryFile, suite2p)
                    # marked from suite2p's thread, so a cancel that waits for it still records it
                    done.append("registration")
                    _write_marker(staging, identity, stages, complete=False)

                stage_of["stage"] = "registration"
                yield from _run_in_thread(register, relay, events, stage_of, plan)
            elif "registration" in done:
                plan["step"] += 1
            stage_of["stage"] = "detection"  # suite2p's preamble (classifier choice) comes before the banner
            outputs = yield from _run_in_thread(
                lambda: _pipeline(db, plane_settings, False, torch_device, BinaryFile, suite2p),
                relay, events, stage_of, plan,
            )
            _save_ops(db, plane_settings, plane_dir, outputs)
            done.append("complete")
            _write_marker(staging, identity, stages, complete=False)
            plan["step"] = (plane + 1) * per_plane
    finally:
        s2p_logger.removeHandler(relay)
        s2p_logger.setLevel(old_level)


def _pipeline(db: dict, settings: dict, run_registration: bool, torch_device, BinaryFile, suite2p):
    """One call of suite2p's per-plane pipeline on the plane's binaries (like suite2p's run_plane)."""
    import contextlib
    from datetime import datetime

    settings = copy.deepcopy(settings)
    settings["date_proc"] = datetime.now().astimezone()
    Ly, Lx, n_frames = db["Ly"], db["Lx"], db["nframes"]
    with contextlib.ExitStack() as files:
        f_reg = files.enter_context(BinaryFile(Ly=Ly, Lx=Lx, filename=db["reg_file"], n_frames=n_frames, write=True))
        f_reg_chan2 = None
        if db["nchannels"] > 1:
            f_reg_chan2 = files.enter_context(BinaryFile(Ly=Ly, Lx=Lx, filename=db["reg_file_chan2"], n_frames=n_frames, write=True))
        try:
            return suite2p.pipeline(
                db["save_path"], f_reg, None, f_reg_chan2, None, run_registration, settings,
                badframes=np.zeros(n_frames, bool), stat=None, device=torch_device, Zstack=None,
            )
        except ValueError as exc:
            if "no ROIs were found" not in str(exc):
                raise
    # An empty plane is a result, not a failure: keep the registration and report no cells.
    logging.getLogger("suite2p.movie_recon").warning(
        "no ROIs found in plane %s; try a lower threshold_scaling, another diameter or tau*fs", db.get("iplane", 0)
    )
    reg_path = Path(db["save_path"]) / "reg_outputs.npy"
    reg_outputs = load_record(reg_path) if reg_path.exists() else None
    return (reg_outputs, None, None, None, None, None, None, None, None, None, None, {})


def _save_ops(db: dict, settings: dict, plane_dir: Path, outputs) -> None:
    """ops.npy as suite2p's run_plane writes it, for the suite2p GUI and older readers."""
    reg_outputs, detect_outputs, stat, F = outputs[0], outputs[1], outputs[2], outputs[3]
    plane_times = outputs[-1]
    if F is None:  # suite2p stops after detection when it finds no ROI; write the empty results it skips
        empty = np.zeros((0, int(db["nframes"])), np.float32)
        for name in ("F.npy", "Fneu.npy", "spks.npy"):
            np.save(plane_dir / name, empty)
        np.save(plane_dir / "iscell.npy", np.zeros((0, 2)))
        if stat is None or not (plane_dir / "stat.npy").exists():
            np.save(plane_dir / "stat.npy", np.zeros(0, dtype=object))
    ops = {**db, **settings, **(reg_outputs or {}), **(detect_outputs or {})}
    ops["plane_times"] = plane_times
    np.save(plane_dir / "ops.npy", ops)


_PATH_KEYS = ("save_path0", "save_path", "fast_disk", "settings_path", "db_path", "reg_file", "reg_file_chan2")


def _relocate_paths(folder: Path, staging: Path, final: Path) -> None:
    """Point the paths suite2p stored in db.npy/ops.npy at the folder's final place."""
    old_root, new_root = str(staging), str(final)
    for name in ("db.npy", "ops.npy"):
        path = folder / name
        if not path.is_file():
            continue
        record = load_record(path)
        for key in _PATH_KEYS:
            value = record.get(key)
            if isinstance(value, str) and value.startswith(old_root):
                record[key] = new_root + value[len(old_root):]
        if isinstance(record.get("save_path0"), str) and record["save_path0"] == str(staging.parent):
            record["save_path0"] = str(final.parent)
        record["save_folder"] = final.name
        np.save(path, record)


def _publish(staging: Path, final: Path, staging_root: Path) -> None:
    """Move the finished run into place with renames, replacing an older one only now."""
    if final.exists():
        retired = staging_root / "replaced"
        os.replace(final, retired)
    os.replace(staging, final)
    shutil.rmtree(staging_root, ignore_errors=True)


def _load_results(final: Path, cell_threshold: float | None) -> list[Traces]:
    from .io.suite2p_folder import read_suite2p_folder

    return read_suite2p_folder(final, cell_threshold=cell_threshold)
