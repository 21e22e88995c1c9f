"""The digital twin (a published Sensorium 2022 model of real V1 neurons) as the simulated
population, using the twin's own code at run time.

Two ways in:

- :class:`TwinRates`: a ``rates_fn`` for :func:`simulate_session` that imports the user's
  copy of ``make_twin_dataset.py`` and runs the twin on the simulated movie and behaviour;
- :func:`session_from_twin_dataset`: renders the raw two-photon session of a dataset that
  ``make_twin_dataset.py --save-rates`` already wrote (its videos, behaviour and noise-free
  rates), so the slow twin does not have to run again.

Nothing of the twin is copied into this package: the script is loaded from the path given.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import run
from .config import SimulationConfig
from .session import SimulatedSession, simulate_session_job
from .stimulus import StimulusTrial

# make_twin_dataset.py draws counts of about 1.5 per rate unit per 30 Hz frame at noise 1.0,
# so one unit is about 45 spikes/s; its median cell then fires ~10 spikes/s.
HZ_PER_TWIN_UNIT = 45.0


def load_twin_module(script: str | Path):
    """Import ``make_twin_dataset.py`` from ``script`` (a file path) as a module."""
    script = Path(script)
    if not script.is_file():
        raise InputError("twin script not found (expected make_twin_dataset.py)", script)
    name = f"_movie_recon_twin_{abs(hash(str(script.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken script is bad input
        raise InputError(f"could not import the twin script ({type(exc).__name__}: {exc})", script) from None
    for needed in ("Twin", "twin_rates"):
        if not hasattr(module, needed):
            raise InputError(f"the twin script has no {needed!r}; is it make_twin_dataset.py?", script)
    sys.modules[name] = module
    return module


class TwinRates:
    """``rates_fn(movie, behaviour) -> (neurons, T)`` spikes/s computed by the digital twin.

    ``script``: path to ``make_twin_dataset.py``; ``checkpoint``: the twin's ``.pth``;
    ``n_neurons``: a random subset (``None``: all 7,776); ``pupil_centre_scale`` converts our
    pupil position (degrees) to the twin's units.
    """

    def __init__(
        self,
        script: str | Path,
        checkpoint: str | Path,
        *,
        n_neurons: int | None = None,
        seed: int = 0,
        hz_per_unit: float = HZ_PER_TWIN_UNIT,
        pupil_centre_scale: float = 1.0 / 3.0,
    ):
        import torch

        self.module = load_twin_module(script)
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise InputError("twin checkpoint not found", checkpoint)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.twin = self.module.Twin(state)
        total = self.twin.n_neurons
        self.index = None
        if n_neurons is not None and n_neurons < total:
            chosen = np.sort(np.random.default_rng(seed).choice(total, n_neurons, replace=False))
            self.index = torch.from_numpy(chosen)
        self.n_neurons = total if self.index is None else int(n_neurons)
        self.hz_per_unit = float(hz_per_unit)
        self.pupil_centre_scale = float(pupil_centre_scale)
        self.frame_shape = (int(self.module.H), int(self.module.W))

    def __call__(self, movie: np.ndarray, behaviour: dict) -> np.ndarray:
        import torch

        movie = np.ascontiguousarray(movie, dtype=np.float32)
        if movie.ndim != 3 or movie.shape[1:] != self.frame_shape:
            raise InputError(f"the twin sees {self.frame_shape} frames, got a movie of shape {movie.shape}")
        n = movie.shape[0]
        behavior = np.stack([behaviour.get("pupil", np.full(n, 20.0)), behaviour.get("running", np.zeros(n))]).astype(np.float32)
        centre = np.stack([behaviour.get("pupil_x", np.zeros(n)), behaviour.get("pupil_y", np.zeros(n))]).astype(np.float32)
        with torch.no_grad():
            rates = self.module.twin_rates(self.twin, movie, behavior, centre * self.pupil_centre_scale, self.index)
        return np.maximum(np.asarray(rates, np.float32), 0.0) * self.hz_per_unit

    def __repr__(self) -> str:
        return f"TwinRates({self.n_neurons} neurons, {self.hz_per_unit:g} Hz per unit)"


def read_twin_dataset(folder: str | Path):
    """(videos [(T, H, W)], rates [(N, T)], behaviour [(4, T)], tiers) from a Sensorium-layout
    folder written by ``make_twin_dataset.py --save-rates``."""
    from ..io.sensorium import read_sensorium

    folder = Path(folder)
    rates_dir = folder / "ground_truth" / "rates"
    if not rates_dir.is_dir():
        raise InputError("no ground_truth/rates: make the dataset with make_twin_dataset.py --save-rates", folder)
    recording = read_sensorium(folder)
    videos, rates, behaviour = [], [], []
    for k in range(len(recording)):
        trial = recording.trial(k)
        rate_path = rates_dir / f"{recording.trial_ids[k]}.npy"
        if not rate_path.exists():
            raise InputError("rates file is missing", rate_path)
        rate = np.load(rate_path, allow_pickle=False)
        if rate.shape[1] != trial.n_frames:
            raise InputError(f"rates have {rate.shape[1]} frames, the video {trial.n_frames}", rate_path)
        videos.append(np.ascontiguousarray(trial.video))
        rates.append(rate.astype(np.float32))
        behaviour.append(trial.behavior)  # pupil, running, pupil_x, pupil_y
    return videos, rates, behaviour, recording.tiers.tolist()


def session_from_twin_dataset(
    dataset: str | Path,
    out_dir: str | Path,
    config: SimulationConfig | None = None,
    seed: int = 0,
    *,
    hz_per_unit: float = HZ_PER_TWIN_UNIT,
    overwrite: bool = False,
) -> SimulatedSession:
    """Render a raw two-photon session from a twin dataset's noise-free rates.

    The dataset's clips become the trials (in its order), its rates (times ``hz_per_unit``)
    drive the spikes, and its behaviour is written as the session's behaviour, sampled at the
    stimulus frames. Between trials (grey screen) each cell fires at its 10th-percentile rate.
    The imaging, timing and ground truth follow ``config`` (its stimulus frame rate must be
    the dataset's 30 Hz).
    """
    config = config or SimulationConfig.tiny()
    videos, rates, behaviour, tiers = read_twin_dataset(dataset)
    trials = [StimulusTrial(v, t, f"{Path(dataset).name}/{i}") for i, (v, t) in enumerate(zip(videos, tiers))]
    trial_rates = [r * hz_per_unit for r in rates]
    job = simulate_session_job(
        out_dir, config, seed, trials=trials, trial_rates=trial_rates, trial_behaviour=behaviour, overwrite=overwrite
    )
    return run(job)
