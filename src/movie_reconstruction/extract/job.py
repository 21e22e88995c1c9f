"""The extraction job: input and settings checked up front, then reuse, resume or a fresh run,
published into ``output_dir/suite2p`` (see the package docstring)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..progress import Job, Progress
from ..traces import Traces
from .conversion import convert_to_binaries
from .run_folder import (
    FINAL_FOLDER,
    STAGING_FOLDER,
    describe_stages,
    publish,
    read_marker,
    relocate_paths,
    run_identity,
    same_identity,
    write_marker,
)
from .stack import open_stack
from .suite2p_config import explicitly_set, fit_settings_to_frame, pick_torch_device, suite2p_settings
from .suite2p_run import run_planes


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
    stack = open_stack(source, h5_key, fs, nplanes, nchannels)
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

    torch_device = pick_torch_device(device)
    s2p_settings = suite2p_settings(
        fs=fs, tau=tau, diameter=diameter, threshold_scaling=threshold_scaling,
        do_registration=do_registration, nonrigid=nonrigid, device=torch_device.type, overrides=settings,
    )
    explicit_nonrigid = nonrigid is not None or explicitly_set(settings, "registration", "nonrigid")
    notes = fit_settings_to_frame(s2p_settings, stack.frame_shape, explicit_nonrigid)
    identity = run_identity(stack, s2p_settings, stack.n_planes, stack.n_channels, functional_channel)

    final = output_dir / FINAL_FOLDER
    existing = read_marker(final) if final.exists() else None
    reuse = bool(existing and existing.get("complete") and same_identity(existing["identity"], identity) and not overwrite)
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

    marker = read_marker(staging) if staging.exists() else None
    if marker is not None and same_identity(marker["identity"], identity):
        stages = marker["stages"]
        if any("registration started" in d and "registration" not in d for d in stages["planes"].values()):
            stages["conversion"] = False  # a registration was interrupted mid-way: its binary is unusable
        yield Progress("resume", 0, None, f"resuming the unfinished run in {staging_root} (done: {describe_stages(stages)})")
    else:
        if staging_root.exists():
            yield Progress("resume", 0, None, f"discarding an unfinished run of other input or settings in {staging_root}")
            shutil.rmtree(staging_root)
        stages = {"conversion": False, "planes": {}}
    staging.mkdir(parents=True, exist_ok=True)

    if not stages["conversion"]:
        stages["planes"] = {}
        yield from convert_to_binaries(stack, staging, s2p_settings, functional_channel)
        stages["conversion"] = True
        write_marker(staging, identity, stages, complete=False)

    yield from run_planes(staging, s2p_settings, stack.n_planes, torch_device, identity, stages)

    for plane in range(stack.n_planes):
        relocate_paths(staging / f"plane{plane}", staging, final)
    relocate_paths(staging, staging, final)
    write_marker(staging, identity, stages, complete=True)
    publish(staging, final, staging_root)
    yield Progress("done", 1, 1, f"suite2p output in {final}")
    return _load_results(final, cell_threshold)


def _load_results(final: Path, cell_threshold: float | None) -> list[Traces]:
    from ..io.suite2p_folder import read_suite2p_folder

    return read_suite2p_folder(final, cell_threshold=cell_threshold)
