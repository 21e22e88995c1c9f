"""The raw stack -> suite2p's int16 binaries (one per plane and channel) and its per-plane db.npy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Progress
from .stack import InputStack


def _plane_db(staging: Path, stack: InputStack, plane: int, nplanes: int, nchannels: int, functional_channel: int) -> dict:
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


def convert_to_binaries(stack: InputStack, staging: Path, settings: dict, functional_channel: int) -> Iterator[Progress]:
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
