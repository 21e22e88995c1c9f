"""A whole simulated session: stimulus, behaviour, neurons and the raw two-photon movie,
written as the same folder and manifest a lab session has, with the truth beside it.

Layout (paths relative to ``session.toml``)::

    session.toml
    raw/imaging_000.tif ...              uint16 (frames, Y, X)
    timing/imaging_frame_times.npy       float64 s, one per imaging frame (shared clock)
    timing/stimulus_frame_times.npy      float64 s, one per movie frame (photodiode)
    timing/daq.h5                        with DaqConfig.write_sync_signals: the DAQ's frame clock, vsync
                                         and photodiode in place of the two timestamp files, and the
                                         wheel encoder (DaqConfig.wheel_encoder) in place of running.csv,
                                         which then goes to ground_truth/
    timing/trials.csv                    trial_id,start_frame,n_frames,tier
    stimulus/movie.npy                   (T, H, W) float32 0..255, every frame shown, in order
    behaviour/running.csv                time,running          (wheel clock)
    behaviour/pupil.csv                  time,pupil,pupil_x,pupil_y   (eye-camera clock)
    simulation.json                      the configuration and seed that made it
    ground_truth/                        never read by the pipeline (see ground_truth/index.json)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .._atomic import atomic_path
from ..errors import InputError
from ..progress import Job, Progress, run
from .behaviour import Behaviour, behaviour_on_stimulus_clock, make_behaviour
from .config import SimulationConfig
from .daq import write_timing
from .ground_truth import GroundTruth, load_ground_truth, write_ground_truth
from .imaging import (
    bleaching,
    calcium_dff,
    draw_spikes,
    make_field,
    motion_trace,
    neuropil_traces,
    render_frames,
    write_tiffs,
)
from .population import V1Population
from .stimulus import StimulusTrial, make_trials
from .timeline import Timeline, check_rates, make_timeline, place_trial_rates

RatesFn = Callable[[np.ndarray, dict], np.ndarray]
MANIFEST = "session.toml"
_NEUROPIL_MODES = 3


@dataclass
class SimulatedSession:
    path: Path  # the session folder
    manifest: Path  # its session.toml
    config: SimulationConfig
    seed: int
    n_neurons: int
    n_imaging_frames: int
    n_stimulus_frames: int
    duration_s: float
    raw_files: list[Path]

    @property
    def ground_truth_dir(self) -> Path:
        return self.path / "ground_truth"

    def load_ground_truth(self) -> GroundTruth:
        return load_ground_truth(self.path)

    @classmethod
    def open(cls, folder: str | Path) -> SimulatedSession:
        """A session written earlier (reads ``simulation.json``)."""
        folder = Path(folder)
        info_path = folder / "simulation.json"
        if not info_path.exists():
            raise InputError("not a simulated session (no simulation.json)", folder)
        info = json.loads(info_path.read_text())
        return cls(
            path=folder,
            manifest=folder / MANIFEST,
            config=SimulationConfig.from_dict(info["config"]),
            seed=int(info["seed"]),
            n_neurons=int(info["n_neurons"]),
            n_imaging_frames=int(info["n_imaging_frames"]),
            n_stimulus_frames=int(info["n_stimulus_frames"]),
            duration_s=float(info["duration_s"]),
            raw_files=[folder / "raw" / name for name in info["raw_files"]],
        )


# ---------------------------------------------------------------------------- the job
# long: the simulation's steps in order (stimulus, behaviour, rates, imaging, files), sharing their state.
def simulate_session_job(
    out_dir: str | Path,
    config: SimulationConfig | None = None,
    seed: int = 0,
    rates_fn: RatesFn | None = None,
    *,
    trials: Sequence[StimulusTrial] | None = None,
    behaviour: Behaviour | None = None,
    trial_rates: Sequence[np.ndarray] | None = None,
    trial_behaviour: Sequence[np.ndarray] | None = None,
    overwrite: bool = False,
) -> Job[SimulatedSession]:
    """Generator version of :func:`simulate_session`: yields :class:`Progress`, returns the session.

    For rates computed elsewhere (e.g. a twin dataset): ``trials`` gives the clips,
    ``trial_rates`` one ``(N, T_i)`` spikes/s array per trial (grey frames get each cell's
    10th-percentile rate) and ``trial_behaviour`` one ``(4, T_i)`` array per trial (pupil,
    running, pupil_x, pupil_y on the trial frames).
    """
    config = config or SimulationConfig.default()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InputError("output folder exists and is not empty (overwrite=True, or --overwrite, replaces it)", out_dir)
    # spawn(n)'s first children do not depend on n: adding the DAQ stream changed no other stream
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)]
    rng_stimulus, rng_timing, rng_behaviour, rng_field, rng_population, rng_spikes, rng_imaging, rng_daq = streams

    yield Progress("simulation", 0, 5, "stimulus")
    if trials is None:
        trials = make_trials(config.stimulus, rng_stimulus)
    if not trials:
        raise InputError("a session needs at least one trial")
    timeline = make_timeline(config, trials, rng_timing)
    pad_s = 2.0  # activity before imaging starts, so calcium is at steady state in frame 0
    if trial_behaviour is not None:
        if len(trial_behaviour) != len(trials):
            raise InputError(f"{len(trial_behaviour)} behaviour arrays for {len(trials)} trials")
        behaviour = behaviour_on_stimulus_clock(timeline.frame_times, timeline.trial_starts, trial_behaviour)
    if behaviour is None:
        behaviour = make_behaviour(
            rng_behaviour, timeline.imaging_times[0] - pad_s, timeline.imaging_times[-1] + pad_s, config.behaviour
        )
    frame_mid = 0.5 * (timeline.frame_times + timeline.frame_ends)
    behaviour_on_frames = behaviour.at(frame_mid)

    yield Progress("simulation", 1, 5, "neurons")
    population = None
    if trial_rates is not None:
        rates = place_trial_rates(trial_rates, timeline)
        field = make_field(rng_field, rates.shape[0], config.imaging, _NEUROPIL_MODES)
    elif rates_fn is None:
        field = make_field(rng_field, config.population.n_neurons, config.imaging, _NEUROPIL_MODES)
        cortical = field.centres / np.asarray(config.imaging.fov_shape, np.float64)
        population = V1Population.random(
            config.population,
            config.stimulus.frame_shape,
            config.stimulus.frame_rate,
            rng_population,
            cortical_positions=cortical,
            degrees_per_pixel=config.stimulus.degrees_per_pixel,
        )
        rates = check_rates(population(timeline.movie, behaviour_on_frames), timeline.movie.shape[0], "the population")
    else:
        rates = check_rates(rates_fn(timeline.movie, behaviour_on_frames), timeline.movie.shape[0], "rates_fn")
        field = make_field(rng_field, rates.shape[0], config.imaging, _NEUROPIL_MODES)

    yield Progress("simulation", 2, 5, "spikes and calcium")
    n_neurons = rates.shape[0]
    starts = np.concatenate([[timeline.imaging_times[0] - pad_s], timeline.frame_times, [timeline.frame_ends[-1]]])
    ends = np.concatenate([[timeline.frame_times[0]], timeline.frame_ends, [timeline.imaging_times[-1] + 1.0]])
    padded = np.concatenate([rates[:, :1], rates, rates[:, -1:]], axis=1)
    spike_times, spike_neurons = draw_spikes(rng_spikes, padded, starts, ends)
    rise, decay, dff_per_spike = config.imaging.indicator_kinetics()
    amplitudes = dff_per_spike * np.exp(rng_imaging.normal(0.0, 0.25, n_neurons))
    dff = calcium_dff(
        spike_times, spike_neurons, n_neurons, timeline.imaging_times, rise, decay, amplitudes, config.imaging.saturation_spikes
    )
    running_at_imaging = np.interp(timeline.imaging_times, behaviour.running_times, behaviour.running)
    motion = motion_trace(rng_imaging, timeline.imaging_times, running_at_imaging, config.imaging)
    neuropil = neuropil_traces(rng_imaging, dff, _NEUROPIL_MODES, config.imaging.frame_rate, config.imaging.neuropil_modulation)
    bleach = bleaching(timeline.imaging_times, config.imaging)

    with atomic_path(out_dir) as staged:
        for sub in ("raw", "timing", "stimulus", "behaviour", "ground_truth"):
            (staged / sub).mkdir(parents=True)
        yield Progress("simulation", 3, 5, "raw frames")
        n_imaging = timeline.imaging_times.size
        blocks = render_frames(rng_imaging, field, dff, neuropil, bleach, motion, config.imaging)
        raw_files = yield from write_tiffs(staged / "raw", blocks, n_imaging, field.shape, config.imaging.frames_per_file)

        yield Progress("simulation", 4, 5, "timing, stimulus, behaviour, ground truth")
        write_timing(staged, timeline.imaging_times, timeline.frame_times, config.daq, rng_daq,
                     running=(behaviour.running_times, behaviour.running))
        _write_trials(staged / "timing/trials.csv", timeline)
        np.save(staged / "stimulus/movie.npy", timeline.movie.astype(np.float32))
        _write_behaviour(staged / "behaviour", behaviour, staged / "ground_truth" if _wheel_in_daq(config) else None)
        write_ground_truth(
            staged / "ground_truth", rates, spike_times, spike_neurons, timeline, dff, field, motion, neuropil, bleach, population
        )
        (staged / MANIFEST).write_text(_manifest(config, raw_files, timeline.movie.shape[1:]))
        duration = float(timeline.imaging_times[-1] - timeline.imaging_times[0] + 1.0 / config.imaging.frame_rate)
        info = {
            "generator": f"movie_reconstruction.simulate {__version__}",
            "seed": int(seed),
            "config": config.to_dict(),
            "n_neurons": int(n_neurons),
            "n_imaging_frames": int(n_imaging),
            "n_stimulus_frames": int(timeline.movie.shape[0]),
            "duration_s": duration,
            "raw_files": raw_files,
            "population": (
                "rates given per trial" if trial_rates is not None
                else "built-in V1Population" if rates_fn is None else repr(rates_fn)
            ),
            "trial_sources": timeline.sources,
            "suite2p_hints": {
                "fs": config.imaging.frame_rate,
                "tau": decay,
                "diameter": float(2 * np.mean(config.imaging.soma_radius_pixels)),
                "nonrigid": False,  # the simulated motion is rigid
            },
        }
        (staged / "simulation.json").write_text(json.dumps(info, indent=1))
    yield Progress("simulation", 5, 5, "done")
    return SimulatedSession(
        path=out_dir,
        manifest=out_dir / MANIFEST,
        config=config,
        seed=int(seed),
        n_neurons=int(n_neurons),
        n_imaging_frames=int(n_imaging),
        n_stimulus_frames=int(timeline.movie.shape[0]),
        duration_s=duration,
        raw_files=[out_dir / "raw" / name for name in raw_files],
    )


def simulate_session(
    out_dir: str | Path,
    config: SimulationConfig | None = None,
    seed: int = 0,
    rates_fn: RatesFn | None = None,
    *,
    overwrite: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> SimulatedSession:
    """Simulate a two-photon session of mouse V1 watching natural movies and write it to ``out_dir``.

    ``config``: a :class:`SimulationConfig` (``SimulationConfig.default()``, ``.quick()``,
    ``.tiny()``). ``seed``: the same seed and config give the same files, bit for bit.
    ``rates_fn``: replaces the built-in population; called once as
    ``rates_fn(movie (T, H, W) 0..255, behaviour {channel: (T,)}) -> (neurons, T) spikes/s``.
    The folder is written atomically: it appears complete, or not at all.
    """
    return run(simulate_session_job(out_dir, config, seed, rates_fn, overwrite=overwrite), on_progress)


# ---------------------------------------------------------------------------- writers
def _write_trials(path: Path, timeline: Timeline) -> None:
    lines = ["trial_id,start_frame,n_frames,tier"]
    for k, (start, length, tier) in enumerate(zip(timeline.trial_starts, timeline.trial_lengths, timeline.tiers)):
        lines.append(f"{k},{int(start)},{int(length)},{tier}")
    path.write_text("\n".join(lines) + "\n")


def _write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    names = list(columns)
    table = np.column_stack([np.asarray(columns[n], np.float64) for n in names])
    np.savetxt(path, table, delimiter=",", header=",".join(names), comments="", fmt="%.6f")


def _wheel_in_daq(config: SimulationConfig) -> bool:
    return bool(config.daq.write_sync_signals and config.daq.wheel_encoder)


def _write_behaviour(folder: Path, behaviour: Behaviour, running_folder: Path | None = None) -> None:
    """running.csv and pupil.csv; running.csv in ``running_folder`` when the DAQ's wheel encoder gives running."""
    running = {"time": behaviour.running_times, "running": behaviour.running}
    _write_csv((running_folder or folder) / "running.csv", running)
    _write_csv(
        folder / "pupil.csv",
        {"time": behaviour.pupil_times, "pupil": behaviour.pupil, "pupil_x": behaviour.pupil_x, "pupil_y": behaviour.pupil_y},
    )


def _manifest(config: SimulationConfig, raw_files: list[str], frame_shape: tuple[int, int]) -> str:
    raw = ", ".join(f'"raw/{name}"' for name in raw_files)
    if config.daq.write_sync_signals:
        imaging_times = stimulus_times = ""
        sync = (
            "[sync]\n# raw DAQ signals in place of timestamp files; see docs/manifest.md\n"
            'file = "timing/daq.h5"\nframe_clock = "frame_clock"\nvsync = "vsync"\nphotodiode = "photodiode"\n'
            f"refresh_hz = {float(config.stimulus.monitor_refresh_hz)!r}\n"
            f"{_wheel_keys(config.daq)}\n"
        )
    else:
        imaging_times = 'frame_times = "timing/imaging_frame_times.npy"\n'
        stimulus_times = 'frame_times = "timing/stimulus_frame_times.npy"\n'
        sync = ""
    height, width = (int(v) for v in frame_shape)
    behaviour_files = ('"behaviour/pupil.csv"' if _wheel_in_daq(config)
                       else '"behaviour/running.csv", "behaviour/pupil.csv"')
    return (
        "# A simulated two-photon session (movie_reconstruction.simulate). Paths are relative to this file.\n"
        "[session]\n"
        f"name = {json.dumps(config.name)}\n\n"
        "[imaging]\n"
        f"raw = [{raw}]\n"
        f"{imaging_times}"
        "plane_offsets = [0.0]\n"
        f"frame_rate = {float(config.imaging.frame_rate)!r}\n\n"
        "[stimulus]\n"
        'movie = "stimulus/movie.npy"\n'
        f"{stimulus_times}"
        'trials = "timing/trials.csv"\n'
        f"frame_rate = {float(config.stimulus.frame_rate)!r}\n"
        f"size = [{height}, {width}]\n\n"
        "[behaviour]\n"
        f"files = [{behaviour_files}]\n\n"
        f"{sync}"
        "[ground_truth]\n"
        "# The simulation's truth; the pipeline never reads it.\n"
        'folder = "ground_truth"\n'
    )


def _wheel_keys(daq) -> str:
    """The [sync] lines for the simulated wheel encoder ('' without one)."""
    if not daq.wheel_encoder:
        return ""
    if daq.wheel_encoder == "quadrature":
        lines = f'wheel_a = "wheel_a"\nwheel_b = "wheel_b"\nwheel_counts_per_rev = {int(daq.wheel_counts_per_rev)}\n'
    else:
        lines = f'wheel_analog = "wheel_analog"\nwheel_analog_max_volts = {float(daq.wheel_analog_max_volts)!r}\n'
    return ("# running speed from the wheel encoder (ground_truth/running.csv holds the speed it encodes)\n"
            f"{lines}wheel_diameter_cm = {float(daq.wheel_diameter_cm)!r}\n")
