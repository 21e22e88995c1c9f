"""Behaviour of a head-fixed mouse on a wheel, each signal on its own acquisition clock.

- running speed (cm/s) from a wheel encoder: rest and running bouts of random length;
- pupil diameter (camera pixels) from an eye camera: follows arousal (running plus a slow
  drift) with a lag;
- pupil position (degrees) from the same camera: fixational drift, saccades, and a slow
  return toward the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from .config import BehaviourConfig

CHANNELS = ("running", "pupil", "pupil_x", "pupil_y")


@dataclass
class Behaviour:
    running_times: np.ndarray  # (n,) s, wheel clock
    running: np.ndarray  # (n,) cm/s
    pupil_times: np.ndarray  # (m,) s, eye-camera clock
    pupil: np.ndarray  # (m,) diameter, camera pixels
    pupil_x: np.ndarray  # (m,) degrees
    pupil_y: np.ndarray  # (m,) degrees

    def at(self, times: np.ndarray) -> dict[str, np.ndarray]:
        """Every channel interpolated at ``times`` (s): ``{"running": ..., "pupil": ..., ...}``."""
        times = np.asarray(times, np.float64)
        return {
            "running": np.interp(times, self.running_times, self.running).astype(np.float32),
            "pupil": np.interp(times, self.pupil_times, self.pupil).astype(np.float32),
            "pupil_x": np.interp(times, self.pupil_times, self.pupil_x).astype(np.float32),
            "pupil_y": np.interp(times, self.pupil_times, self.pupil_y).astype(np.float32),
        }


def _sample_clock(rng: np.random.Generator, start: float, stop: float, rate: float) -> np.ndarray:
    """A free-running acquisition clock: random phase, slightly off its nominal rate."""
    period = 1.0 / (rate * (1.0 + rng.normal(0.0, 2e-4)))
    first = start - rng.uniform(0.0, period)
    return first + period * np.arange(int(np.ceil((stop - first) / period)) + 2)


def _ou(rng: np.random.Generator, n: int, dt: float, tau: float, sd: float) -> np.ndarray:
    a = np.exp(-dt / tau)
    noise = rng.normal(0.0, sd * np.sqrt(1 - a * a), n)
    out, _ = lfilter([1.0], [1.0, -a], noise, zi=[a * rng.normal(0.0, sd)])
    return out


def _running(rng: np.random.Generator, times: np.ndarray, config: BehaviourConfig) -> tuple[np.ndarray, np.ndarray]:
    """Speed (cm/s) and the running state (0/1) at ``times``: alternating rest and run bouts."""
    state = np.zeros(times.size)
    target = np.zeros(times.size)
    t = times[0]
    running = rng.random() < config.run_bout_s / (config.run_bout_s + config.rest_bout_s)
    while t < times[-1]:
        length = rng.exponential(config.run_bout_s if running else config.rest_bout_s) + 0.5
        inside = (times >= t) & (times < t + length)
        if running:
            state[inside] = 1.0
            target[inside] = rng.uniform(*config.run_speed_cm_s)
        t += length
        running = not running
    dt = float(np.median(np.diff(times)))
    # the mouse accelerates and stops over ~0.5 s; speed fluctuates within a bout
    a = np.exp(-dt / 0.5)
    smooth, _ = lfilter([1 - a], [1.0, -a], target, zi=[a * target[0]])
    speed = smooth * (1.0 + 0.25 * _ou(rng, times.size, dt, 1.0, 1.0)) + rng.normal(0.0, 0.3, times.size)
    return np.maximum(speed, 0.0).astype(np.float64), state


def make_behaviour(rng: np.random.Generator, start_s: float, stop_s: float, config: BehaviourConfig) -> Behaviour:
    running_times = _sample_clock(rng, start_s, stop_s, config.running_sample_rate_hz)
    speed, state = _running(rng, running_times, config)

    pupil_times = _sample_clock(rng, start_s, stop_s, config.pupil_sample_rate_hz)
    dt = float(np.median(np.diff(pupil_times)))
    running_state = np.interp(pupil_times, running_times, state)
    arousal = np.clip(0.6 * running_state + 0.4 * (0.5 + 0.5 * np.tanh(_ou(rng, pupil_times.size, dt, 20.0, 1.0))), 0, 1)
    a = np.exp(-dt / config.pupil_time_constant_s)
    lagged, _ = lfilter([1 - a], [1.0, -a], arousal, zi=[a * arousal[0]])
    pupil = config.pupil_baseline + config.pupil_arousal_gain * lagged + rng.normal(0.0, 0.2, pupil_times.size)

    # eye position: drift that relaxes to the centre, plus saccades (steps)
    n = pupil_times.size
    steps = np.zeros((2, n))
    saccades = np.flatnonzero(rng.random(n) < config.saccades_per_s * dt)
    steps[:, saccades] = rng.normal(0.0, config.saccade_amplitude_deg, (2, saccades.size))
    relax = np.exp(-dt / config.eye_recentre_s)
    position = lfilter([1.0], [1.0, -relax], steps, axis=1)
    position += np.stack([_ou(rng, n, dt, 1.0, config.fixation_drift_deg) for _ in range(2)])
    position += rng.normal(0.0, 0.05, (2, n))  # tracking noise
    return Behaviour(
        running_times=running_times,
        running=speed,
        pupil_times=pupil_times,
        pupil=pupil,
        pupil_x=position[0],
        pupil_y=position[1],
    )


def behaviour_on_stimulus_clock(frame_times: np.ndarray, trial_starts, trial_behaviour) -> Behaviour:
    """A :class:`Behaviour` sampled at the trial frames (the dataset has no other clock)."""
    times, values = [], []
    for start, block in zip(trial_starts, trial_behaviour):
        times.append(frame_times[start : start + block.shape[1]])
        values.append(block)
    times = np.concatenate(times)
    values = np.concatenate(values, axis=1).astype(np.float64)
    return Behaviour(
        running_times=times, running=np.maximum(values[1], 0.0), pupil_times=times,
        pupil=values[0], pupil_x=values[2], pupil_y=values[3],
    )
