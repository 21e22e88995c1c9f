"""The raw input of an extraction (files, a folder, a RawStack or an array) as one stack read in
chunks of frames, with the fingerprint that tells a re-run of the same input."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.tiff import pages_to_frames

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


@dataclass
class InputStack:
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


def open_stack(source, h5_key: str | None, fs: float | None, nplanes: int | None, nchannels: int | None) -> InputStack:
    """Wrap ``source`` (files, folder, RawStack or array) with the lead's lazy readers."""
    from natsort import natsorted

    from ..io.tiff import TIFF_SUFFIXES, RawStack, read_raw_stack

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

        from ..io.hdf5 import read_h5_stack

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


def _raw_stack(raw, files, key, nplanes: int | None = None, nchannels: int | None = None) -> InputStack:
    data = raw.data
    if nplanes or nchannels:  # HDF5 stores pages: regroup them as frames of planes x channels
        data = pages_to_frames(data[:, 0, 0], nplanes or 1, nchannels or 1, files[0])
    fingerprints = []
    for path in files:
        stat = Path(path).stat()
        fingerprints.append({"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "key": key})
    return InputStack(
        description=", ".join(Path(p).name for p in files[:3]) + (" ..." if len(files) > 3 else ""),
        data=data,
        frame_rate=raw.frame_rate,
        fingerprint={"files": fingerprints},
        data_path=str(Path(files[0]).resolve().parent),
    )


def _array_stack(array, fs: float | None, nplanes: int, nchannels: int) -> InputStack:
    if array.ndim != 3:
        raise InputError(f"an in-memory stack must be (frames, height, width) in acquisition order, got shape {tuple(array.shape)}")
    digest = hashlib.blake2b(digest_size=16)
    for start in range(0, array.shape[0], 256):
        digest.update(np.ascontiguousarray(np.asarray(array[start:start + 256])).tobytes())
    return InputStack(
        description=f"array {tuple(array.shape)} {array.dtype}",
        data=pages_to_frames(array, nplanes, nchannels, None),
        frame_rate=fs,
        fingerprint={"array": {"shape": list(array.shape), "dtype": str(array.dtype), "blake2b": digest.hexdigest()}},
        data_path="",
    )
