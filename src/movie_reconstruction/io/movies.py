"""Stimulus movies from video files (PyAV), TIFF or NPY, as grey frames at the model's size.

Frames are returned as float32 grey levels in 0..255, ``(T, H, W)``, default 36x64 (the
Sensorium size). The source is centre-cropped to the target aspect ratio before resizing, so
the picture is not stretched; ``fit="stretch"`` keeps the whole frame instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, require_finite

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg")
SENSORIUM_SIZE = (36, 64)


@dataclass
class StimulusMovie:
    frames: np.ndarray  # (T, H, W) float32, 0..255
    frame_rate: float | None
    source: Path | None = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


def to_grey(frames: np.ndarray) -> np.ndarray:
    """RGB(A) -> luma (ITU-R 601 weights); grey input passes through."""
    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[-1] in (3, 4):
        return frames[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return frames.astype(np.float32, copy=False)


def to_grey_levels(frames: np.ndarray, path: Path | None = None) -> np.ndarray:
    """Map integer or [0, 1] float frames onto 0..255 grey levels."""
    if np.issubdtype(frames.dtype, np.integer):
        scale = 255.0 / np.iinfo(frames.dtype).max
        return frames.astype(np.float32) * np.float32(scale)
    frames = frames.astype(np.float32, copy=False)
    require_finite(frames, "movie frames", path)
    if frames.size and frames.max() <= 1.0 and frames.min() >= 0.0:
        return frames * np.float32(255.0)
    return frames


def resize_frames(frames: np.ndarray, size: tuple[int, int], fit: str = "crop") -> np.ndarray:
    """Resize ``(T, h, w)`` frames to ``size`` with area averaging (PIL box filter)."""
    from PIL import Image

    h_out, w_out = size
    t, h, w = frames.shape
    if (h, w) == (h_out, w_out):
        return frames.astype(np.float32, copy=False)
    box = None
    if fit == "crop":
        target = w_out / h_out
        if w / h > target:
            cw = h * target
            box = ((w - cw) / 2, 0, (w + cw) / 2, h)
        else:
            ch = w / target
            box = (0, (h - ch) / 2, w, (h + ch) / 2)
    elif fit != "stretch":
        raise ValueError(f"fit must be 'crop' or 'stretch', got {fit!r}")
    out = np.empty((t, h_out, w_out), np.float32)
    for i in range(t):
        image = Image.fromarray(np.ascontiguousarray(frames[i], dtype=np.float32), mode="F")
        out[i] = np.asarray(image.resize((w_out, h_out), Image.Resampling.BOX, box=box))
    return out


def _read_video(path: Path, max_frames: int | None):
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise InputError(f"not a readable video ({exc})", path) from None
    frames = []
    with container:
        if not container.streams.video:
            raise InputError("file has no video stream", path)
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else None
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="gray").astype(np.float32))
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except Exception as exc:
            raise InputError(f"video could not be decoded after {len(frames)} frames ({exc})", path) from None
    if not frames:
        raise InputError("video has no frames", path)
    return np.stack(frames), rate


def read_stimulus_movie(
    path: str | Path,
    *,
    size: tuple[int, int] = SENSORIUM_SIZE,
    fit: str = "crop",
    max_frames: int | None = None,
    frame_rate: float | None = None,
) -> StimulusMovie:
    """Read a stimulus movie (mp4/avi/webm via PyAV, TIFF, or NPY ``(T, H, W)``) as grey 0..255 at ``size``."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    suffix = path.suffix.lower()
    rate = None
    if suffix in VIDEO_SUFFIXES:
        frames, rate = _read_video(path, max_frames)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            frames = tifffile.imread(path)
        except Exception as exc:
            raise InputError(f"unreadable TIFF ({exc})", path) from None
        frames = to_grey_levels(to_grey(frames), path)
    elif suffix == ".npy":
        try:
            frames = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"not a readable .npy array ({exc})", path) from None
        frames = to_grey_levels(to_grey(np.asarray(frames)), path)
    else:
        raise InputError(f"unknown movie format {suffix!r}; use one of {VIDEO_SUFFIXES + ('.tif', '.npy')}", path)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise InputError(f"movie must be (frames, height, width) or RGB, got shape {frames.shape}", path)
    if max_frames is not None:
        frames = frames[:max_frames]
    frames = resize_frames(np.asarray(frames), size, fit)
    return StimulusMovie(np.clip(frames, 0, 255), frame_rate if frame_rate is not None else rate, path)
