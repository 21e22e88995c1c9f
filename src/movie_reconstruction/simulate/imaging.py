"""From firing rates to a raw two-photon movie.

Rates -> Poisson spike times -> GCaMP calcium (double exponential, mild saturation) ->
fluorescence of soma footprints on a background with blood vessels and neuropil -> slow
bleaching -> rigid motion -> photon shot noise and detector read noise -> uint16 frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.ndimage import gaussian_filter
from scipy.signal import lfilter

from ..errors import InputError
from .config import ImagingConfig


@dataclass
class Field:
    """The static anatomy of the field of view."""

    centres: np.ndarray  # (N, 2) soma centres (y, x), pixels
    radii: np.ndarray  # (N,) pixels
    footprints: sparse.csr_matrix  # (N, Y*X) weights, peak 1
    brightness: np.ndarray  # (N,) photons per footprint-weight per frame at rest
    background: np.ndarray  # (Y, X) photons per frame
    neuropil_maps: np.ndarray  # (modes, Y, X) photons per frame
    shape: tuple[int, int]

    def labels(self, threshold: float = 0.3) -> np.ndarray:
        """(Y, X) int32: 0 background, neuron ``k`` is ``k + 1`` where its footprint is strongest."""
        dense = self.footprints.toarray()
        best = dense.argmax(axis=0)
        strength = dense.max(axis=0)
        labels = np.where(strength >= threshold, best + 1, 0)
        return labels.reshape(self.shape).astype(np.int32)


def place_somata(rng: np.random.Generator, n: int, config: ImagingConfig, margin: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Soma centres (y, x) and radii that do not overlap, kept ``margin`` px inside the edges."""
    height, width = config.fov_shape
    radii = rng.uniform(*config.soma_radius_pixels, n)
    centres = np.zeros((n, 2))
    for k in range(n):
        for _attempt in range(2000):
            edge = radii[k] + margin
            candidate = np.array([rng.uniform(edge, height - edge), rng.uniform(edge, width - edge)])
            if k == 0:
                break
            distance = np.hypot(*(centres[:k] - candidate).T)
            if (distance >= 0.95 * (radii[:k] + radii[k]) + 1.0).all():
                break
        else:
            raise InputError(
                f"cannot place {n} non-overlapping somata of radius {config.soma_radius_pixels} px in a "
                f"{height}x{width} px field of view; use fewer neurons or a larger field"
            )
        centres[k] = candidate
    return centres, radii


def _vessels(rng: np.random.Generator, shape: tuple[int, int], count: int = 3) -> np.ndarray:
    """(Y, X) in 0..1: blurred random curved lines, where blood vessels shade the tissue."""
    height, width = shape
    canvas = np.zeros(shape)
    for _ in range(count):
        y, x = rng.uniform(0, height), rng.uniform(0, width)
        angle = rng.uniform(0, 2 * np.pi)
        thickness = rng.uniform(1.0, 2.5)
        for _step in range(4 * max(shape)):
            angle += rng.normal(0, 0.05)
            y, x = y + np.sin(angle), x + np.cos(angle)
            if not (0 <= y < height and 0 <= x < width):
                break
            canvas[int(y), int(x)] = thickness
    return np.clip(gaussian_filter(canvas, 1.5) * 3.0, 0.0, 1.0)


def make_field(rng: np.random.Generator, n: int, config: ImagingConfig, neuropil_modes: int = 3) -> Field:
    height, width = config.fov_shape
    centres, radii = place_somata(rng, n, config)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rows, cols, values = [], [], []
    for k in range(n):
        r = radii[k]
        box = int(np.ceil(r + 2))
        cy, cx = centres[k]
        y0, y1 = max(0, int(cy) - box), min(height, int(cy) + box + 2)
        x0, x1 = max(0, int(cx) - box), min(width, int(cx) + box + 2)
        yy, xx = y[y0:y1, x0:x1] - cy, x[y0:y1, x0:x1] - cx
        angle = rng.uniform(0, np.pi)
        elongation = rng.uniform(0.85, 1.15)
        u = (yy * np.cos(angle) + xx * np.sin(angle)) * elongation
        v = (-yy * np.sin(angle) + xx * np.cos(angle)) / elongation
        distance = np.hypot(u, v)
        body = 1.0 / (1.0 + np.exp((distance - r) / 0.6))  # soft edge
        nucleus = config.nucleus_dimming * np.exp(-0.5 * (distance / (0.45 * r)) ** 2)
        weight = body * (1.0 - nucleus)
        keep = weight > 0.02
        rows.append(np.full(keep.sum(), k))
        cols.append(((yy + cy).round().astype(int)[keep] * width + (xx + cx).round().astype(int)[keep]))
        values.append(weight[keep] / weight.max())
    footprints = sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, height * width), dtype=np.float32
    )
    vessels = _vessels(rng, (height, width))
    texture = gaussian_filter(rng.normal(0, 1, (height, width)), 6.0)
    texture = 1.0 + 0.25 * texture / (texture.std() + 1e-9)
    shade = 1.0 - 0.7 * vessels
    background = config.background_brightness * np.clip(texture, 0.3, None) * shade
    maps = []
    for _ in range(neuropil_modes):
        field = gaussian_filter(rng.normal(0, 1, (height, width)), 10.0)
        field = 1.0 + 0.5 * field / (field.std() + 1e-9)
        maps.append(np.clip(field, 0.2, None) * shade)
    maps = np.stack(maps)
    maps *= config.neuropil_brightness / maps.sum(axis=0).mean()
    brightness = config.soma_brightness * np.exp(rng.normal(0.0, 0.3, n))
    return Field(centres, radii, footprints, brightness, background.astype(np.float32), maps.astype(np.float32), (height, width))


def draw_spikes(
    rng: np.random.Generator, rates: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson spike times from rates that are constant over each ``[start, end)`` interval.

    Returns ``(times, neurons)`` sorted by time.
    """
    durations = (ends - starts)[None, :]
    counts = rng.poisson(np.maximum(rates, 0.0) * durations)
    neuron_index, interval_index = np.nonzero(counts)
    repeats = counts[neuron_index, interval_index]
    neurons = np.repeat(neuron_index, repeats)
    intervals = np.repeat(interval_index, repeats)
    times = starts[intervals] + rng.random(intervals.size) * (ends - starts)[intervals]
    order = np.argsort(times, kind="stable")
    return times[order], neurons[order].astype(np.int32)


def calcium_dff(
    spike_times: np.ndarray,
    spike_neurons: np.ndarray,
    n_neurons: int,
    frame_times: np.ndarray,
    rise_s: float,
    decay_s: float,
    dff_per_spike: np.ndarray,
    saturation_spikes: float,
) -> np.ndarray:
    """(N, frames) dF/F sampled at ``frame_times`` (evenly spaced): each spike adds a
    double-exponential transient that peaks at ``dff_per_spike``; large transients saturate."""
    period = float(np.median(np.diff(frame_times)))
    frame_index = np.clip(np.searchsorted(frame_times, spike_times, side="left"), 0, frame_times.size - 1)
    keep = spike_times <= frame_times[-1]
    lag = frame_times[frame_index[keep]] - spike_times[keep]
    out = np.zeros((n_neurons, frame_times.size))
    peak_time = rise_s * decay_s / (decay_s - rise_s) * np.log(decay_s / rise_s)
    peak = np.exp(-peak_time / decay_s) - np.exp(-peak_time / rise_s)
    for tau, sign in ((decay_s, 1.0), (rise_s, -1.0)):
        added = np.zeros((n_neurons, frame_times.size))
        np.add.at(added, (spike_neurons[keep], frame_index[keep]), np.exp(-lag / tau))
        a = np.exp(-period / tau)
        out += sign * lfilter([1.0], [1.0, -a], added, axis=1)
    calcium = np.maximum(out / peak, 0.0)  # in spikes' worth of peak amplitude
    return (dff_per_spike[:, None] * calcium / (1.0 + calcium / saturation_spikes)).astype(np.float32)


def motion_trace(rng: np.random.Generator, frame_times: np.ndarray, running: np.ndarray, config: ImagingConfig) -> np.ndarray:
    """(frames, 2) rigid shifts (dy, dx) in pixels: slow drift plus running-related jitter."""
    period = float(np.median(np.diff(frame_times)))
    n = frame_times.size
    out = np.zeros((n, 2))
    for axis in range(2):
        a = np.exp(-period / config.motion_time_constant_s)
        slow, _ = lfilter([1.0], [1.0, -a], rng.normal(0, config.motion_sd_pixels * np.sqrt(1 - a * a), n), zi=[0.0])
        b = np.exp(-period / 0.15)
        fast, _ = lfilter([1.0], [1.0, -b], rng.normal(0, np.sqrt(1 - b * b), n), zi=[0.0])
        moving = np.clip(running / 20.0, 0.0, 1.0)
        out[:, axis] = slow + config.running_motion_pixels * moving * fast
    return out.astype(np.float32)


def neuropil_traces(rng: np.random.Generator, dff: np.ndarray, modes: int, frame_rate: float, modulation: float) -> np.ndarray:
    """(modes, frames) neuropil dF/F: the smoothed mean activity of random groups of cells
    (out-of-focus processes of the same network)."""
    n = dff.shape[0]
    traces = []
    for _ in range(modes):
        group = rng.random(n) < 0.5
        if not group.any():
            group[:] = True
        trace = dff[group].mean(axis=0)
        trace = gaussian_filter(trace, 0.3 * frame_rate)
        traces.append(modulation * trace)
    return np.asarray(traces, np.float32)


def bleaching(frame_times: np.ndarray, config: ImagingConfig) -> np.ndarray:
    elapsed = frame_times - frame_times[0]
    return (1.0 - config.bleach_fraction + config.bleach_fraction * np.exp(-elapsed / config.bleach_time_constant_s)).astype(
        np.float32
    )


def shift_frames(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each frame by its (dy, dx) (``out[y, x] = in[y - dy, x - dx]``), bilinear, edges repeated."""
    count, height, width = frames.shape
    pad = int(np.ceil(np.abs(shifts).max(initial=0.0))) + 1
    padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    out = np.empty_like(frames)
    for t in range(count):
        dy, dx = shifts[t]
        iy, ix = int(np.floor(dy)), int(np.floor(dx))
        fy, fx = dy - iy, dx - ix
        y0, x0 = pad - iy, pad - ix
        a = padded[t, y0 : y0 + height, x0 : x0 + width]
        b = padded[t, y0 - 1 : y0 - 1 + height, x0 : x0 + width]
        c = padded[t, y0 : y0 + height, x0 - 1 : x0 - 1 + width]
        d = padded[t, y0 - 1 : y0 - 1 + height, x0 - 1 : x0 - 1 + width]
        out[t] = (1 - fy) * ((1 - fx) * a + fx * c) + fy * ((1 - fx) * b + fx * d)
    return out


# Each block of frames is cut into this many parts, each with its own random stream, so the
# noise is drawn in parallel threads and the bytes do not depend on the number of cores.
_RENDER_PARTS = 4


def _detect(rng: np.random.Generator, photons: np.ndarray, motion: np.ndarray, config: ImagingConfig) -> np.ndarray:
    """Move the frames, then shot noise (Poisson photons) and detector read noise, as uint16 ADU."""
    photons = shift_frames(photons, motion)
    counts = rng.poisson(np.maximum(photons, 0.0)).astype(np.float32)
    adu = config.offset_adu + config.photons_to_adu * counts
    adu += config.read_noise_adu * rng.standard_normal(counts.shape, dtype=np.float32)
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)


def render_frames(
    rng: np.random.Generator,
    field: Field,
    dff: np.ndarray,
    neuropil: np.ndarray,
    bleach: np.ndarray,
    motion: np.ndarray,
    config: ImagingConfig,
    chunk: int = 256,
) -> Iterator[np.ndarray]:
    """Yield uint16 frame blocks ``(frames, Y, X)`` in order."""
    height, width = field.shape
    n_frames = dff.shape[1]
    weighted = field.footprints.multiply(field.brightness[:, None]).tocsr().astype(np.float32)  # (N, P)
    static = (field.background + field.neuropil_maps.sum(axis=0)).reshape(-1) + np.asarray(weighted.sum(axis=0)).ravel()
    static = static.astype(np.float32)
    maps = field.neuropil_maps.reshape(field.neuropil_maps.shape[0], -1).astype(np.float32)
    # numpy's samplers release the GIL, so threads draw the noise of a block's parts at once
    with ThreadPoolExecutor(max_workers=min(_RENDER_PARTS, os.cpu_count() or 1)) as pool:
        for start in range(0, n_frames, chunk):
            stop = min(n_frames, start + chunk)
            activity = np.ascontiguousarray(dff[:, start:stop].T, dtype=np.float32)  # (t, N)
            photons = static[None, :] + np.asarray(weighted.T.dot(activity.T).T) + neuropil[:, start:stop].T.astype(np.float32) @ maps
            photons *= bleach[start:stop, None]
            photons = photons.reshape(stop - start, height, width)
            bounds = np.linspace(0, stop - start, _RENDER_PARTS + 1).astype(int)
            parts = [
                pool.submit(_detect, part_rng, photons[a:b], motion[start + a : start + b], config)
                for part_rng, a, b in zip(rng.spawn(_RENDER_PARTS), bounds[:-1], bounds[1:])
            ]
            yield np.concatenate([part.result() for part in parts])


def write_tiffs(folder, blocks: Iterator[np.ndarray], n_frames: int, frame_shape: tuple[int, int], frames_per_file: int):
    """Write blocks of frames as ``imaging_000.tif``, ``imaging_001.tif``, ... (each a single
    series of ``frames_per_file`` pages, the last one shorter); a job that yields a
    :class:`~movie_reconstruction.progress.Progress` per rendered block, so that a cancel lands
    within one block (tifffile would otherwise draw the whole movie in one call). The frames wait
    in a memory-mapped scratch file in ``folder`` until all are rendered. Returns the file names."""
    import tifffile

    from ..progress import Progress

    if frames_per_file <= 0:
        raise InputError(f"frames_per_file must be positive, got {frames_per_file}")
    scratch = Path(folder) / ".frames.npy"
    frames = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint16, shape=(n_frames, *frame_shape))
    try:
        done = 0
        for block in blocks:
            frames[done:done + len(block)] = block
            done += len(block)
            yield Progress("raw frames", done, n_frames, f"{done} of {n_frames} frames rendered")
        names = []
        for index, start in enumerate(range(0, n_frames, frames_per_file)):
            name = f"imaging_{index:03d}.tif"
            tifffile.imwrite(Path(folder) / name, frames[start:start + frames_per_file], photometric="minisblack")
            names.append(name)
        return names
    finally:
        del frames
        scratch.unlink(missing_ok=True)
