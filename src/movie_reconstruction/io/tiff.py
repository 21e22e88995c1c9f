"""Raw two-photon stacks from TIFF, BigTIFF or multi-file TIFF, read lazily through dask.

ScanImage files interleave pages as frame -> plane -> channel; we read the frame rate, number
of planes and channels and the zoom from ScanImage's metadata where present, and say which
of them were absent so the user can supply them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


@dataclass
class RawStack:
    """A raw recording: ``data`` is a dask array ``(frames, planes, channels, Y, X)``."""

    data: object  # dask.array.Array
    paths: list[Path]
    frame_rate: float | None
    n_planes: int
    n_channels: int
    zoom: float | None = None
    scanimage: bool = False
    metadata: dict = field(default_factory=dict, repr=False)
    missing_metadata: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.data.shape[-2]), int(self.data.shape[-1])

    def movie(self, plane: int = 0, channel: int = 0):
        """One plane and channel as a lazy ``(frames, Y, X)`` dask array."""
        return self.data[:, plane, channel]


def list_tiffs(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The TIFF files named by ``source``: one file, a list of files, or a folder (natural sort order)."""
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if source.is_dir():
            from natsort import natsorted

            files = natsorted((p for p in source.iterdir() if p.suffix.lower() in TIFF_SUFFIXES), key=str)
            if not files:
                raise InputError("folder contains no TIFF files", source)
            return list(files)
        paths = [source]
    else:
        paths = [Path(p) for p in source]
        if not paths:
            raise InputError("no TIFF files were given")
    for path in paths:
        if not path.exists():
            raise InputError("file not found", path)
    return paths


def _scanimage_layout(tif) -> tuple[dict, float | None, int | None, int | None, float | None]:
    meta = tif.scanimage_metadata or {}
    frame = meta.get("FrameData", {}) if isinstance(meta, dict) else {}

    def get(*keys):
        for key in keys:
            if key in frame:
                return frame[key]
        return None

    rate = get("SI.hRoiManager.scanVolumeRate", "SI.hRoiManager.scanFrameRate")
    planes = get("SI.hStackManager.actualNumSlices", "SI.hStackManager.numSlices")
    if get("SI.hFastZ.enable") in (False, 0) and get("SI.hStackManager.enable") in (False, 0):
        planes = 1
    channels = get("SI.hChannels.channelSave")
    if channels is not None:
        channels = len(channels) if isinstance(channels, (list, tuple)) else 1
    zoom = get("SI.hRoiManager.scanZoomFactor")
    return frame, (float(rate) if rate else None), (int(planes) if planes else None), channels, (
        float(zoom) if zoom else None
    )


class _TiffErrors(logging.Handler):
    """Collects what tifffile logs while walking the page chain: it logs, not raises, on a broken chain."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _check_complete(tif, path: Path) -> int:
    """Number of pages, after checking that the page chain is intact and the last page's data lies inside the file."""
    errors = _TiffErrors()
    logger = logging.getLogger("tifffile")
    logger.addHandler(errors)
    try:
        pages = tif.pages
        n_pages = len(pages)
        last = pages[n_pages - 1]
    except Exception as exc:  # tifffile raises several types on a broken IFD chain
        raise InputError(f"unreadable TIFF ({exc})", path) from None
    finally:
        logger.removeHandler(errors)
    if errors.messages:
        raise InputError(f"TIFF is truncated or corrupt after page {n_pages - 1} ({errors.messages[0]})", path)
    size = os.path.getsize(path)
    offsets, counts = getattr(last, "dataoffsets", ()), getattr(last, "databytecounts", ())
    if offsets and counts and offsets[-1] + counts[-1] > size:
        raise InputError(
            f"TIFF is truncated: page {n_pages - 1} needs bytes up to {offsets[-1] + counts[-1]}, file has {size}",
            path,
        )
    return n_pages


def _read_pages(path: str, start: int, stop: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.asarray(key=range(start, stop))


def pages_to_frames(pages, n_planes: int, n_channels: int, where=None):
    """Regroup ``(pages, Y, X)`` in acquisition order (frame -> plane -> channel) as
    ``(frames, planes, channels, Y, X)``, refusing a page count that does not divide."""
    per_frame = n_planes * n_channels
    if pages.shape[0] % per_frame:
        raise InputError(
            f"{pages.shape[0]} pages are not a whole number of frames of {n_planes} plane(s) x {n_channels} channel(s)",
            where,
        )
    return pages.reshape(pages.shape[0] // per_frame, n_planes, n_channels, *pages.shape[1:])


def read_raw_stack(
    source: str | Path | Sequence[str | Path],
    *,
    frame_rate: float | None = None,
    n_planes: int | None = None,
    n_channels: int | None = None,
    chunk_frames: int = 256,
) -> RawStack:
    """Open raw TIFF(s) lazily. Arguments given here override what the files say."""
    import dask.array as da
    import tifffile
    from dask import delayed

    paths = list_tiffs(source)
    blocks, shape0, dtype0 = [], None, None
    si_meta, si_rate, si_planes, si_channels, zoom, is_si = {}, None, None, None, None, False
    for k, path in enumerate(paths):
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise InputError(f"unreadable TIFF ({exc})", path) from None
        with tif:
            n_pages = _check_complete(tif, path)
            page = tif.pages[0]
            shape, dtype = tuple(page.shape), page.dtype
            if len(shape) != 2:
                raise InputError(f"expected one 2-D image per page, got page shape {shape}", path)
            if k == 0:
                is_si = bool(tif.is_scanimage)
                if is_si:
                    si_meta, si_rate, si_planes, si_channels, zoom = _scanimage_layout(tif)
        if shape0 is None:
            shape0, dtype0 = shape, dtype
        elif shape != shape0 or dtype != dtype0:
            raise InputError(f"frame shape/dtype {shape}/{dtype} differs from {paths[0].name}'s {shape0}/{dtype0}", path)
        for start in range(0, n_pages, chunk_frames):
            stop = min(n_pages, start + chunk_frames)
            block = delayed(_read_pages)(str(path), start, stop)
            blocks.append(da.from_delayed(block, shape=(stop - start, *shape), dtype=dtype))

    missing = []
    rate = frame_rate if frame_rate is not None else si_rate
    if rate is None:
        missing.append("frame rate")
    planes = n_planes or si_planes or 1
    channels = n_channels or si_channels or 1
    if n_planes is None and si_planes is None:
        missing.append("number of planes (assumed 1)")
    if n_channels is None and si_channels is None:
        missing.append("number of channels (assumed 1)")
    if zoom is None:
        missing.append("zoom")

    pages = da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
    data = pages_to_frames(pages, planes, channels, paths[0])
    return RawStack(
        data=data, paths=paths, frame_rate=rate, n_planes=planes, n_channels=channels, zoom=zoom,
        scanimage=is_si, metadata=si_meta, missing_metadata=missing,
    )
