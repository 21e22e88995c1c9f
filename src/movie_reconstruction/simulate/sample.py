"""napari sample data: a small simulated session as layers (no napari import needed).

napari calls :func:`simulated_session_sample` with no arguments and adds the returned
``(data, kwargs, layer_type)`` tuples as layers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .config import SimulationConfig
from .session import SimulatedSession, simulate_session


def default_sample_folder(preset: str = "quick", seed: int = 0) -> Path:
    """Where :func:`ensure_sample_session` keeps a session: ``$MOVIE_RECON_CACHE`` or ``~/.cache/movie-recon``."""
    root = Path(os.environ.get("MOVIE_RECON_CACHE", Path.home() / ".cache" / "movie-recon"))
    return root / "simulated" / f"{preset}-seed{seed}"


def ensure_sample_session(folder: str | Path | None = None, preset: str = "quick", seed: int = 0) -> SimulatedSession:
    """A simulated session made once and reused (for the demo and the "run all" widget).

    An existing folder is reused only if it was made with the same preset configuration and
    seed; otherwise it is simulated again (atomically, replacing the old one).
    """
    config = SimulationConfig.preset(preset)
    folder = Path(folder) if folder is not None else default_sample_folder(preset, seed)
    info = folder / "simulation.json"
    if info.exists():
        try:
            made = json.loads(info.read_text())
            if made.get("seed") == seed and SimulationConfig.from_dict(made["config"]) == config:
                return SimulatedSession.open(folder)
        except (ValueError, KeyError, TypeError):
            pass
    return simulate_session(folder, config, seed=seed, overwrite=True)


def simulated_session_layers(folder: str | Path) -> list[tuple]:
    """Layers for a simulated session folder: raw stack, stimulus movie, true soma labels."""
    import tifffile

    session = SimulatedSession.open(folder)
    raw = np.concatenate([tifffile.imread(f) for f in session.raw_files])
    movie = np.load(session.path / "stimulus" / "movie.npy")
    labels = np.load(session.ground_truth_dir / "labels.npy")
    low, high = np.percentile(raw[: min(200, raw.shape[0])], [1, 99.8])
    imaging_rate = session.config.imaging.frame_rate
    return [
        (
            raw,
            {
                "name": "raw two-photon (simulated)",
                "colormap": "gray",
                "contrast_limits": (float(low), float(high)),
                "metadata": {"frame_rate": imaging_rate, "source": "movie_reconstruction.simulate"},
            },
            "image",
        ),
        (
            movie,
            {
                "name": "stimulus movie",
                "colormap": "gray",
                "contrast_limits": (0.0, 255.0),
                "visible": False,
                "metadata": {"frame_rate": session.config.stimulus.frame_rate},
            },
            "image",
        ),
        (labels, {"name": "ROI ground truth", "opacity": 0.35}, "labels"),
    ]


def simulated_session_sample(seed: int = 0) -> list[tuple]:
    """A tiny simulated session (a few seconds to make): raw stack, stimulus, ROI truth."""
    folder = Path(tempfile.mkdtemp(prefix="movie-recon-sample-"))
    try:
        simulate_session(folder / "session", SimulationConfig.tiny(), seed=seed)
        return simulated_session_layers(folder / "session")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
