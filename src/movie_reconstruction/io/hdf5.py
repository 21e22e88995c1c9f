"""Raw stacks stored in HDF5 (e.g. the Allen Institute's ophys files), read lazily."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .tiff import RawStack

COMMON_KEYS = ("data", "mov", "input_frames", "imaging", "frames")


def read_h5_stack(path: str | Path, key: str | None = None, *, frame_rate: float | None = None) -> RawStack:
    """Open a ``(frames, Y, X)`` dataset. Without ``key``, the one 3-D dataset (or a common name) is used."""
    import dask.array as da
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc})", path) from None
    stacks = {}
    h5.visititems(lambda name, obj: stacks.setdefault(name, obj) if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None)
    if key is None:
        candidates = [k for k in COMMON_KEYS if k in stacks] or list(stacks)
        if len(candidates) != 1 and not any(k in stacks for k in COMMON_KEYS):
            h5.close()
            raise InputError(f"cannot tell which dataset is the movie among {sorted(stacks) or 'none'}; pass key=", path)
        key = candidates[0]
    if key not in h5:
        h5.close()
        raise InputError(f"no dataset {key!r}; 3-D datasets are {sorted(stacks)}", path)
    dataset = h5[key]
    if dataset.ndim != 3:
        h5.close()
        raise InputError(f"dataset {key!r} has shape {dataset.shape}, expected (frames, Y, X)", path)
    data = da.from_array(dataset, chunks=(min(256, dataset.shape[0]), *dataset.shape[1:]))[:, None, None]
    return RawStack(
        data=data, paths=[path], frame_rate=frame_rate, n_planes=1, n_channels=1,
        metadata={"hdf5_key": key}, missing_metadata=[] if frame_rate else ["frame rate"],
    )
