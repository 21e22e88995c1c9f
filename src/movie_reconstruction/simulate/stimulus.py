"""Naturalistic grey movies cut from photographs (and, when given, video files).

A clip from a photograph imitates what a head-fixed mouse sees of a scene: a window that
drifts slowly, jumps like a saccade, zooms in and out, and changes contrast and luminance.
A clip from a video plays it at 30 Hz from a random start through a fixed random window.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError
from .config import StimulusConfig

GREY = 128.0
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class StimulusTrial:
    video: np.ndarray  # (T, H, W) float32, 0..255
    tier: str
    source: str  # image name or video path


def _to_grey(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.float32) * 255.0
    array = array.astype(np.float32)
    if array.ndim == 3:
        array = array[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    if array.max() <= 1.0:
        array = array * 255.0
    return array


@lru_cache(maxsize=32)
def load_source_image(name: str) -> np.ndarray:
    """A grey (h, w) float32 image from ``skimage.data`` by name, or from an image file path."""
    path = Path(name)
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        if not path.exists():
            raise InputError("stimulus image not found", path)
        import skimage.io

        try:
            return _to_grey(skimage.io.imread(path))
        except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
            raise InputError(f"not a readable image ({exc})", path) from None
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise InputError(f"{name!r} is neither an image file nor a scikit-image sample (skimage.data.{name})")
    image = loader()
    if image is None or np.ndim(image) not in (2, 3):
        raise InputError(f"skimage.data.{name} is not a 2-D photograph")
    return _to_grey(image)


@lru_cache(maxsize=8)
def load_source_video(path: str, max_frames: int = 1800, max_width: int = 320) -> tuple[np.ndarray, float]:
    """(frames (T, h, w) float32 grey, frames per second) decoded with PyAV, downscaled on decode."""
    import av

    file = Path(path)
    if not file.exists():
        raise InputError("stimulus video not found", file)
    frames = []
    try:
        with av.open(str(file)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else 25.0
            for frame in container.decode(video=0):
                if frame.width > max_width:
                    height = max(2, int(round(frame.height * max_width / frame.width)))
                    frame = frame.reformat(width=max_width, height=height)
                frames.append(frame.to_ndarray(format="gray").astype(np.float32))
                if len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, IndexError) as exc:
        raise InputError(f"not a readable video ({exc})", file) from None
    if not frames:
        raise InputError("video has no frames", file)
    return np.stack(frames), fps


def _smooth_walk(rng: np.random.Generator, n: int, sd: float, time_constant_frames: float) -> np.ndarray:
    """An Ornstein-Uhlenbeck path of stationary s.d. ``sd``."""
    a = np.exp(-1.0 / max(time_constant_frames, 1e-6))
    noise = rng.normal(0.0, sd * np.sqrt(1 - a * a), n)
    from scipy.signal import lfilter

    start = rng.normal(0.0, sd)
    path, _ = lfilter([1.0], [1.0, -a], noise, zi=[a * start])
    return path


def _segment_values(rng: np.random.Generator, n: int, mean_frames: float, low: float, high: float, ramp: int) -> np.ndarray:
    """Piecewise-constant values drawn from U(low, high) in segments, joined by linear ramps."""
    values = np.empty(n)
    t = 0
    current = rng.uniform(low, high)
    while t < n:
        length = max(ramp + 1, int(rng.exponential(mean_frames)))
        target = rng.uniform(low, high)
        ramp_len = min(ramp, n - t)
        values[t : t + ramp_len] = np.linspace(current, target, ramp_len, endpoint=False) if ramp_len else []
        values[t + ramp_len : t + length] = target
        current = target
        t += length
    return values[:n]


def _normalise_contrast(clip: np.ndarray, contrast: np.ndarray, luminance: np.ndarray) -> np.ndarray:
    """Each frame to the given r.m.s. contrast and mean (grey levels), clipped to 0..255."""
    mean = clip.mean(axis=(1, 2), keepdims=True)
    sd = clip.std(axis=(1, 2), keepdims=True) + 1.0
    out = (clip - mean) / sd * contrast[:, None, None] + luminance[:, None, None]
    return np.clip(out, 0.0, 255.0).astype(np.float32)


def image_clip(image: np.ndarray, rng: np.random.Generator, n_frames: int, config: StimulusConfig) -> np.ndarray:
    """(n_frames, H, W) from one photograph: drift, saccade-like jumps, zooms, contrast changes."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    height, width = config.frame_shape
    h, w = image.shape
    fr = config.frame_rate
    aspect = width / height
    largest = min(w, h * aspect)  # widest window that fits
    # zoom: the window width as a fraction of the largest, in segments of ~3 s joined by 0.8 s zooms
    log_scale = _segment_values(rng, n_frames, 3.0 * fr, np.log(0.3), np.log(0.95), ramp=max(1, int(0.8 * fr)))
    window_w = largest * np.exp(log_scale)
    window_h = window_w / aspect
    # position: a smooth drift (velocity ~ an Ornstein-Uhlenbeck process, a few output pixels
    # per second) plus saccade-like jumps (~1 per 1.5 s), kept inside the image
    source_per_output = window_w / width
    drift_x = np.cumsum(_smooth_walk(rng, n_frames, 4.0 / fr, 1.0 * fr) * source_per_output)
    drift_y = np.cumsum(_smooth_walk(rng, n_frames, 2.5 / fr, 1.0 * fr) * source_per_output)
    cx = w / 2 + rng.uniform(-0.2, 0.2) * w + drift_x
    cy = h / 2 + rng.uniform(-0.2, 0.2) * h + drift_y
    jumps = np.flatnonzero(rng.random(n_frames) < 1.0 / (1.5 * fr))
    for t in jumps:
        cx[t:] += rng.normal(0.0, 0.15 * w)
        cy[t:] += rng.normal(0.0, 0.15 * h)
    cx = np.clip(cx, window_w / 2, w - window_w / 2)
    cy = np.clip(cy, window_h / 2, h - window_h / 2)
    # anti-alias for the typical down-sampling factor of this clip
    blur = 0.45 * float(np.median(window_w)) / width
    source = gaussian_filter(image, blur) if blur > 0.5 else image
    ys = np.linspace(-0.5, 0.5, height)[None, :, None] * window_h[:, None, None] + cy[:, None, None]
    xs = np.linspace(-0.5, 0.5, width)[None, None, :] * window_w[:, None, None] + cx[:, None, None]
    ys, xs = np.broadcast_arrays(ys, xs)
    clip = map_coordinates(source, [ys.ravel(), xs.ravel()], order=1, mode="reflect").reshape(n_frames, height, width)
    if rng.random() < 0.5:
        clip = clip[:, :, ::-1]
    contrast = _segment_values(rng, n_frames, 2.5 * fr, 20.0, 65.0, ramp=max(1, int(0.5 * fr)))
    luminance = _segment_values(rng, n_frames, 3.0 * fr, 100.0, 156.0, ramp=max(1, int(0.5 * fr)))
    return _normalise_contrast(clip.astype(np.float32), contrast, luminance)


def video_clip(video: tuple[np.ndarray, float], rng: np.random.Generator, n_frames: int, config: StimulusConfig) -> np.ndarray:
    """(n_frames, H, W) from a video: random start, played at ``frame_rate``, mirrored past its end."""
    from scipy.ndimage import map_coordinates

    frames, fps = video
    count, h, w = frames.shape
    height, width = config.frame_shape
    aspect = width / height
    window_w = min(w, h * aspect) * rng.uniform(0.5, 1.0)
    window_h = window_w / aspect
    cx = rng.uniform(window_w / 2, w - window_w / 2)
    cy = rng.uniform(window_h / 2, h - window_h / 2)
    position = rng.uniform(0, max(count - 1, 1)) + np.arange(n_frames) * fps / config.frame_rate
    period = max(2 * (count - 1), 1)
    position = np.mod(position, period)
    index = np.where(position > count - 1, period - position, position).round().astype(int)
    ys = np.linspace(cy - window_h / 2, cy + window_h / 2, height)
    xs = np.linspace(cx - window_w / 2, cx + window_w / 2, width)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    clip = np.stack([map_coordinates(frames[i], [grid_y, grid_x], order=1, mode="reflect") for i in index])
    contrast = np.full(n_frames, rng.uniform(25.0, 60.0))
    luminance = np.full(n_frames, rng.uniform(100.0, 156.0))
    return _normalise_contrast(clip.astype(np.float32), contrast, luminance)


def _check_sources(config: StimulusConfig) -> None:
    shared = (set(config.train_images) & set(config.test_images)) | (set(config.train_videos) & set(config.test_videos))
    if shared:
        raise InputError(f"test sources must not be used for training, but {sorted(shared)} appear in both")
    if config.n_train + config.n_validation > 0 and not (config.train_images or config.train_videos):
        raise InputError("no training stimulus sources: give train_images or train_videos")
    if config.n_test > 0 and not (config.test_images or config.test_videos):
        raise InputError("no test stimulus sources: give test_images or test_videos")
    if config.trial_frames < 2:
        raise InputError(f"trials of {config.trial_seconds} s at {config.frame_rate} Hz have fewer than two frames")


def make_trials(config: StimulusConfig, rng: np.random.Generator) -> list[StimulusTrial]:
    """All trials, in presentation order (tiers interleaved at random)."""
    _check_sources(config)
    tiers = ["train"] * config.n_train + ["validation"] * config.n_validation + ["test"] * config.n_test
    order = rng.permutation(len(tiers))
    trials = []
    for k in order:
        tier = tiers[k]
        images = config.test_images if tier == "test" else config.train_images
        videos = config.test_videos if tier == "test" else config.train_videos
        sources = [("image", s) for s in images] + [("video", s) for s in videos]
        kind, source = sources[int(rng.integers(len(sources)))]
        if kind == "image":
            clip = image_clip(load_source_image(source), rng, config.trial_frames, config)
        else:
            clip = video_clip(load_source_video(str(source)), rng, config.trial_frames, config)
        trials.append(StimulusTrial(clip, tier, str(source)))
    return trials


def presentation_times(
    n_frames: int, start_s: float, config: StimulusConfig, rng: np.random.Generator
) -> np.ndarray:
    """When each movie frame appeared on screen (photodiode times, seconds on the shared clock).

    Frames last a whole number of monitor refreshes; now and then one is held a refresh
    longer (a dropped frame), as on a real stimulus computer.
    """
    refresh = 1.0 / config.monitor_refresh_hz
    per_frame = max(1, int(round(config.monitor_refresh_hz / config.frame_rate)))
    durations = np.full(n_frames, per_frame, dtype=np.int64)
    durations[rng.random(n_frames) < config.dropped_frame_probability] += 1
    ticks = np.concatenate([[0], np.cumsum(durations[:-1])])
    times = start_s + ticks * refresh + rng.normal(0.0, config.photodiode_jitter_s, n_frames)
    return np.maximum.accumulate(times)  # jitter never reorders frames
