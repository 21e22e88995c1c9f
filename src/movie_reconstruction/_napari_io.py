"""npe2 readers, writer and sample data. Plain functions returning layer-data tuples: no napari
import, and everything heavy is imported inside the functions.

Readers (each returns None for paths that are not its kind, so napari tries the next):

- a saved results folder (``provenance.json``): the results view (stimulus | reconstruction |
  difference per trial with captions, the mask outline and its legend, the ROI map as hidden
  context), metrics in the layer metadata; nothing is recomputed. Inside napari it returns
  layers that present themselves once added (fitted to the movies, contrast linked per trial,
  the plots panel opened), which a reader's plain layer data cannot do, and makes the folder
  the viewer's session (its recording and models), so the step widgets go on from it;
- a suite2p output folder: mean image and ROI labels per plane (ROI traces in the metadata);
  a results folder's own suite2p output keeps the cells its run kept (the cell threshold its
  provenance recorded), other folders the default threshold;
- a Sensorium 2023 mouse folder: the test trials' stimuli;
- a session manifest (``*.toml``): the raw stack (lazy) and the stimulus movie;
- an ophys NWB file (``*.nwb``): mean image and ROIs (or the raw frames), the stimulus on the session clock.

Writer: stimulus and reconstruction layers side by side (one row per trial) as a TIFF stack or
an MP4 movie (PyAV, H.264).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import RunWarning


def _one_path(path) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(path)


# ------------------------------------------------------------------------------------ readers
def _is_sensorium_folder(path: Path) -> bool:
    return path.is_dir() and (path / "meta" / "trials" / "tiers.npy").is_file() and (path / "data" / "videos").is_dir()


def read_sensorium_folder(path):
    """Reader for a Sensorium 2023 mouse folder: shows each test trial's stimulus (or the first trial)."""
    path = _one_path(path)
    if path is None or not _is_sensorium_folder(path):
        return None

    def reader(_path):
        from ._widgets import _layers
        from .io.sensorium import read_sensorium

        recording = read_sensorium(path)
        picks = list(recording.indices("test")[:4]) or [0]
        views = []
        for k in picks:
            trial = recording.trial(int(k))
            views.append(
                _layers.TrialView(
                    trial_id=trial.trial_id, stimulus=trial.video, frame_rate=trial.frame_rate, tier=trial.tier,
                    population_activity=_layers.population_activity(trial.responses),
                )
            )
        extra = {"n_neurons": recording.n_neurons, "source": str(path)}
        return _layers.trial_layers(views, extra_metadata=extra)

    return reader


def _is_results_folder(path: Path) -> bool:
    from .results import PROVENANCE

    return path.is_dir() and (path / PROVENANCE).is_file()


def read_results_folder(path):
    """Reader for a saved results folder: the results view, without recomputing anything."""
    path = _one_path(path)
    if path is None or not _is_results_folder(path):
        return None

    def reader(_path):
        from ._widgets import _layers
        from .results import load_results

        results = load_results(path)
        for warning in results.warnings:  # napari shows warnings as notifications
            warnings.warn(f"{path}: {warning}", RunWarning, stacklevel=2)
        layer_data = _layers.results_layers(results)
        viewer = _current_viewer()
        if viewer is None:
            return layer_data
        from ._widgets._display import layers_presented_on_insert
        from ._widgets._session import adopt_shown_results_folder

        adopt_shown_results_folder(viewer, path)  # the step widgets go on from the opened folder
        return layers_presented_on_insert(viewer, layer_data)

    return reader


def _current_viewer():
    """The napari viewer a reader is reading for; None outside napari (napari is not imported here)."""
    import sys

    napari = sys.modules.get("napari")
    return napari.current_viewer() if napari is not None else None


def _is_suite2p_folder(path: Path) -> bool:
    if not path.is_dir():
        return False
    if (path / "stat.npy").is_file() and (path / "F.npy").is_file():
        return True
    for root in (path, path / "suite2p"):
        if (root / "plane0" / "stat.npy").is_file():
            return True
    return False


def read_suite2p_output(path):
    """Reader for a suite2p output folder (``suite2p/``, its parent, or one ``planeN`` folder)."""
    path = _one_path(path)
    if path is None or not _is_suite2p_folder(path):
        return None

    def reader(_path):
        from ._widgets import _layers
        from .io.suite2p_folder import read_suite2p_folder
        from .settings import PipelineSettings

        recorded = _recorded_cell_threshold(path)
        if recorded is None:
            threshold, said_by = PipelineSettings().cell_threshold, "the default cell threshold"
        else:
            threshold, results_path = recorded
            said_by = f"the cell threshold its run recorded in {results_path}"
        layers = _layers.fov_layers(read_suite2p_folder(path, cell_threshold=threshold))
        for _data, meta, _type in layers:
            meta["metadata"].update({"cell_threshold": threshold, "cell_threshold_from": said_by})
        return layers

    return reader


def _recorded_cell_threshold(path: Path) -> tuple[float | None, Path] | None:
    """(cell threshold, results folder) when ``path`` is a results folder's own suite2p output
    (under its extraction folder) and the run recorded the threshold it kept cells with, so the
    folder opens with the same cells the run used; None otherwise."""
    from .errors import InputError
    from .results import ResultsFolder
    from .results.layout import EXTRACTION

    path = path.resolve()
    for results_path in path.parents:
        if (results_path / EXTRACTION) not in (path, *path.parents) or not _is_results_folder(results_path):
            continue
        try:
            extract = ResultsFolder.open(results_path).provenance().get("settings", {}).get("extract", {})
        except InputError:
            return None
        if "cell_threshold" in extract:
            return extract["cell_threshold"], results_path
        return None
    return None


def read_session_manifest(path):
    """Reader for a session manifest: the raw stack (lazy) and the stimulus movie at model size."""
    path = _one_path(path)
    if path is None or path.suffix.lower() != ".toml" or not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if "[imaging]" not in text or "[stimulus]" not in text:
        return None

    def reader(_path):
        from ._widgets import _layers
        from .io.manifest import load_manifest, read_times
        from .io.movies import read_stimulus_movie

        manifest = load_manifest(path)
        layers = []
        tiffs = [p for p in manifest.raw if p.is_dir() or p.suffix.lower() in (".tif", ".tiff")]
        if tiffs:
            from .io.tiff import read_raw_stack

            stack = read_raw_stack(tiffs, frame_rate=manifest.imaging_frame_rate)
            rate = stack.frame_rate
            if rate is None and manifest.imaging_frame_times is not None:
                times = read_times(manifest.imaging_frame_times)
                rate = float(1.0 / np.median(np.diff(times))) if times.size > 1 else None
            for plane in range(stack.n_planes):
                layers.append(_layers.raw_layer(stack.movie(plane), rate, plane))
        movie = read_stimulus_movie(manifest.stimulus_movie, size=manifest.stimulus_size)
        times = read_times(manifest.stimulus_frame_times) if manifest.stimulus_frame_times else np.zeros(0)
        rate = manifest.stimulus_frame_rate or (float(1.0 / np.median(np.diff(times))) if times.size > 1 else 30.0)
        layers.append(
            (
                movie.frames,
                {
                    "name": f"{manifest.name} · stimulus movie",
                    "colormap": "gray",
                    "contrast_limits": _layers.CONTRAST,
                    "scale": (1.0 / rate, 1.0, 1.0),
                    "visible": not tiffs,
                    "metadata": {"kind": "stimulus movie", "manifest": str(manifest.path), "frame_rate": rate},
                },
                "image",
            )
        )
        return layers

    return reader


def read_nwb_file(path):
    """Reader for an ophys NWB file: mean image and ROIs (or the raw frames), and the stimulus on the session clock."""
    path = _one_path(path)
    if path is None or path.suffix.lower() != ".nwb" or not path.is_file():
        return None

    def reader(_path):
        from ._widgets import _layers
        from .io.nwb import read_nwb

        session = read_nwb(path, size=None)
        raw = session.raw.movie(0) if session.raw is not None else None
        if session.traces:
            layers = _layers.fov_layers(session.traces, raw_stacks=[raw] if raw is not None else None)
        elif raw is not None:
            mean = np.asarray(raw[: min(500, raw.shape[0])]).mean(axis=0)
            layers = [_layers.raw_layer(raw, session.raw.frame_rate, 0),
                      (mean, {"name": "plane 0 · mean image", "colormap": "gray"}, "image")]
        else:
            layers = []
        if session.stimulus_frames is not None:
            times = session.stimulus_times
            rate = float(1.0 / np.median(np.diff(times))) if times.size > 1 else 30.0
            layers.append((session.stimulus_frames, {
                "name": f"{session.name} · stimulus", "colormap": "gray", "contrast_limits": _layers.CONTRAST,
                "scale": (1.0 / rate, 1.0, 1.0), "translate": (float(times[0]), 0.0, 0.0), "visible": not layers,
                "metadata": {"kind": "stimulus movie", "nwb": str(path), "frame_rate": rate, "frame_times": times,
                             "nwb_objects": dict(session.used)},
            }, "image"))
        return layers

    return reader


# ------------------------------------------------------------------------------------ writer
def side_by_side_frames(layer_data: list[tuple]) -> tuple[np.ndarray, float]:
    """``(T, H_grid, W_grid)`` uint8 frames: each trial's stimulus | reconstruction, one row per trial.

    Pairs layers by the ``trial_id`` and ``kind`` in their metadata (as the widgets and the
    results reader make them); trials of different lengths are padded with their last frame.
    """
    from ._widgets import _layers
    from .errors import InputError

    pairs: dict[int, dict[str, np.ndarray]] = {}
    rate = None
    for data, meta, layer_type in layer_data:
        info = meta.get("metadata") or {}
        kind = info.get("kind")
        if layer_type != "image" or kind not in (_layers.STIMULUS, _layers.RECONSTRUCTION) or "trial_id" not in info:
            continue
        pairs.setdefault(int(info["trial_id"]), {})[kind] = np.asarray(data, np.float32)
        rate = rate or info.get("frame_rate")
    rows = []
    for trial_id in sorted(pairs):
        pair = pairs[trial_id]
        if _layers.STIMULUS in pair and _layers.RECONSTRUCTION in pair:
            rows.append((pair[_layers.STIMULUS], pair[_layers.RECONSTRUCTION]))
    if not rows:
        raise InputError(
            "select at least one trial's stimulus and reconstruction layers (made by this plugin) to export side by side"
        )
    n_frames = max(max(s.shape[0], r.shape[0]) for s, r in rows)
    h, w = rows[0][0].shape[1:]
    gap = _layers.GAP
    out = np.full((n_frames, len(rows) * (h + gap) - gap, 2 * w + gap), 255, np.uint8)
    for i, (stimulus, reconstruction) in enumerate(rows):
        for j, movie in enumerate((stimulus, reconstruction)):
            if movie.shape[1:] != (h, w):
                raise InputError(f"all movies must share one frame size; got {movie.shape[1:]} and {(h, w)}")
            padded = np.concatenate([movie, np.repeat(movie[-1:], n_frames - movie.shape[0], 0)]) if movie.shape[0] < n_frames else movie
            y, x = i * (h + gap), j * (w + gap)
            out[:, y : y + h, x : x + w] = np.clip(np.rint(padded), 0, 255).astype(np.uint8)
    return out, float(rate or 30.0)


def write_tiff(path: Path, frames: np.ndarray, rate: float) -> None:
    import io

    import tifffile

    from ._atomic import write_bytes

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frames, imagej=True, metadata={"axes": "TYX", "finterval": 1.0 / rate,
                                                            "Info": "left: stimulus, right: reconstruction"})
    write_bytes(path, buffer.getvalue())


def write_mp4(path: Path, frames: np.ndarray, rate: float, upscale: int = 6) -> None:
    """H.264 MP4 (PyAV), each pixel drawn as ``upscale`` x ``upscale`` so 36x64 frames stay watchable."""
    from fractions import Fraction

    import av

    from ._atomic import atomic_path

    big = np.repeat(np.repeat(frames, upscale, axis=1), upscale, axis=2)
    h, w = big.shape[1:]
    big = np.pad(big, ((0, 0), (0, h % 2), (0, w % 2)), constant_values=255)  # yuv420p wants even sizes
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1000))
            stream.width, stream.height = big.shape[2], big.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18"}
            for frame in big:
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")
                for packet in stream.encode(video_frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def write_side_by_side(path: str, layer_data: list[tuple]) -> list[str]:
    """npe2 writer: ``.tif``/``.tiff`` (uint8 TYX stack) or ``.mp4`` of stimulus | reconstruction."""
    path = Path(path)
    frames, rate = side_by_side_frames(layer_data)
    if path.suffix.lower() == ".mp4":
        write_mp4(path, frames, rate)
    else:
        if path.suffix.lower() not in (".tif", ".tiff"):
            path = path.with_suffix(".tif")
        write_tiff(path, frames, rate)
    return [str(path)]
