"""Statistical verdicts, identification and resolution (numpy only; no torch, no encoder).

Movies are clips of the simulated stimulus generator (photographs that drift, jump and zoom),
so they have the slow structure of real stimuli. Each test pins a way the verdicts could lie:
a reconstruction that is the model's prior must not beat the controls; a perfect one must
beat them all; a still scene must not be failed by the time-reversed control; and noise must
not look significant more often than the nominal 1 %.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.signal import lfilter

from movie_reconstruction.reconstruct.identification import identify
from movie_reconstruction.reconstruct.metrics import masked_correlation
from movie_reconstruction.reconstruct.resolution import spatial_resolution, temporal_resolution
from movie_reconstruction.reconstruct.statistics import (
    ALPHA,
    BEATEN,
    CANNOT_TELL,
    NOT_APPLICABLE,
    compare,
    content_scores,
    control_verdicts,
    evaluated,
    overall_verdict,
    trial_test,
)
from movie_reconstruction.simulate.config import StimulusConfig
from movie_reconstruction.simulate.stimulus import image_clip, load_source_image

RATE = 30.0
FRAMES = 120  # 90 evaluated frames after the 30 dropped
SHAPE = (18, 24)


def clips(count: int, seed: int, frames: int = FRAMES) -> list[np.ndarray]:
    config = StimulusConfig(frame_shape=SHAPE, trial_seconds=frames / RATE)
    rng = np.random.default_rng(seed)
    images = ("chelsea", "gravel", "clock")
    return [image_clip(load_source_image(images[k % 3]), rng, frames, config) for k in range(count)]


def mask() -> np.ndarray:
    alpha = np.zeros(SHAPE, np.float32)
    alpha[3:15, 4:20] = 1.2
    return alpha


def noisy(movie, rng, sd=8.0):
    return np.asarray(movie, np.float64) + rng.normal(0, sd, np.shape(movie))


def by_name(verdicts):
    return {v.control: v for v in verdicts}


def test_content_scores_follow_the_metrics_convention():
    stimulus = clips(1, 0)[0]
    rng = np.random.default_rng(0)
    rec = noisy(stimulus, rng, 30)
    scores = content_scores(rec, stimulus, mask())
    assert scores.masked == pytest.approx(masked_correlation(rec, stimulus, mask()))
    perfect = content_scores(stimulus, stimulus, mask())
    assert perfect.static == pytest.approx(1) and perfect.moving == pytest.approx(1)
    assert all(v == pytest.approx(1) for v in perfect.change.values())
    # the static part alone: a still frame holding the stimulus's mean image recovers no movement
    still = np.repeat(stimulus[30:].mean(0, keepdims=True), FRAMES, 0)
    split = content_scores(still, stimulus, mask())
    assert split.static == pytest.approx(1) and split.moving == 0.0 and split.change[5] == 0.0
    assert evaluated(stimulus, mask()).shape == (FRAMES - 30, int((mask() >= 1).sum()))


def test_fixed_prior_image_loses_to_shuffled_and_grey_and_is_not_identified():
    stimuli = clips(8, 1)
    prior = gaussian_filter(np.random.default_rng(5).uniform(60, 200, SHAPE), 2)
    rng = np.random.default_rng(2)
    real = [noisy(np.broadcast_to(prior, (FRAMES, *SHAPE)), rng, 2) for _ in stimuli]
    controls = {"shuffled": [real[(i + 1) % 8] for i in range(8)],
                "grey-screen prior": [noisy(np.broadcast_to(prior, (FRAMES, *SHAPE)), rng, 2) for _ in stimuli]}
    verdicts = by_name(control_verdicts(real, controls, stimuli, mask(), frame_rate=RATE))
    for name in controls:
        assert verdicts[name].verdict != BEATEN
        for c in verdicts[name].judged():
            assert c.min_p < ALPHA, (name, c.measure)  # eight trials can reach p < 0.01: a real "not beaten"
            assert c.p_value >= ALPHA, (name, c.measure, c.p_value)
    assert overall_verdict(list(verdicts.values()), 8).verdict == "does not beat every control"
    ident = identify(real, stimuli, clips(50, 99), mask(), frame_rate=RATE)
    assert ident.candidates == 58 and ident.distractors == 50
    assert ident.p_value >= ALPHA and ident.top1 <= 2 / 8


def _perfect(stimuli, seed=3):
    rng = np.random.default_rng(seed)
    real = [noisy(s, rng) for s in stimuli]
    n = len(real)
    prior = np.broadcast_to(gaussian_filter(rng.uniform(60, 200, SHAPE), 2), (FRAMES, *SHAPE))
    controls = {
        "shuffled": [real[(i + 1) % n] for i in range(n)],
        "time-reversed": [r[::-1] for r in real],
        "circular shift": [np.roll(r, FRAMES // 2, axis=0) for r in real],
        "grey-screen prior": [noisy(prior, rng) for _ in real],
    }
    return real, controls


def test_perfect_reconstruction_beats_every_control_and_is_identified():
    stimuli = clips(8, 4)
    real, controls = _perfect(stimuli)
    verdicts = control_verdicts(real, controls, stimuli, mask(), frame_rate=RATE)
    for v in verdicts:
        assert v.verdict == BEATEN, (v.control, v.sentence())
        assert all(c.p_value < ALPHA and c.effect > 0.2 and c.ci_low > 0 for c in v.judged())
    assert overall_verdict(verdicts, 8).beats_controls
    ident = identify(real, stimuli, clips(50, 98), mask(), frame_rate=RATE)
    assert ident.top1 == 1.0 and ident.p_value < ALPHA
    assert ident.segment_top1 > 0.9 and ident.segment_candidates == 58 * 3


def test_three_trials_cannot_tell_what_only_trials_replicate():
    stimuli = clips(3, 6)
    real, controls = _perfect(stimuli)
    verdicts = by_name(control_verdicts(real, controls, stimuli, mask(), frame_rate=RATE))
    shuffled = {c.measure: c for c in verdicts["shuffled"].comparisons}
    assert shuffled["masked"].verdict == CANNOT_TELL and shuffled["masked"].min_p == 1 / 8
    assert shuffled["static"].verdict == CANNOT_TELL
    assert verdicts["shuffled"].verdict == CANNOT_TELL
    overall = overall_verdict(list(verdicts.values()), 3)
    assert overall.verdict == "cannot tell" and "shuffled" in overall.sentence and "7" in overall.sentence


def test_still_scene_is_not_penalised_by_the_time_reversed_control():
    rng = np.random.default_rng(7)
    scenes = [np.repeat(s[60:61], FRAMES, 0) for s in clips(3, 8)]
    # nearly still: a faint grating drifting at 3 Hz over a still photograph
    t, x = np.arange(FRAMES)[:, None, None], np.arange(SHAPE[1])[None, None, :]
    grating = 6.0 * np.sin(2 * np.pi * (x / 8.0 - t / 10.0))
    stimuli = [s + grating for s in scenes]
    real = [noisy(s, rng, 3) for s in stimuli]
    reversed_ = {"time-reversed": [r[::-1] for r in real]}
    old_rule_fails = [masked_correlation(c, s, mask()) > masked_correlation(r, s, mask()) / 3
                      for r, c, s in zip(real, reversed_["time-reversed"], stimuli)]
    assert all(old_rule_fails)  # what the retired 1/3 rule called a failure
    verdict = control_verdicts(real, reversed_, stimuli, mask(), frame_rate=RATE)[0]
    assert verdict.verdict == BEATEN, verdict.sentence()
    # perfectly still: the control cannot be judged, and does not count against the reconstruction
    still = control_verdicts([noisy(s, rng, 0.05) for s in scenes], {"time-reversed": [s[::-1] for s in scenes]},
                             scenes, mask(), frame_rate=RATE)
    assert still[0].verdict == NOT_APPLICABLE
    assert overall_verdict(still, 3).verdict != "does not beat every control"


def _ar_movie(rng, tau_frames: float, frames: int = 300, shape=(8, 10)) -> np.ndarray:
    """Noise correlated over ~tau frames and ~1.5 pixels, plus a static image of the same size."""
    a = np.exp(-1 / tau_frames)
    moving = lfilter([1.0], [1.0, -a], rng.normal(size=(frames, *shape)) * np.sqrt(1 - a * a), axis=0)
    moving = gaussian_filter(moving, (0, 1.5, 1.5))
    static = gaussian_filter(rng.normal(size=shape), 2)
    return 128 + 30 * moving / moving.std() + 30 * static / static.std()


@pytest.mark.parametrize("tau_frames", [3.0, 10.0])
def test_block_test_holds_its_level_on_autocorrelated_noise(tau_frames):
    """Noise correlated over 0.1 and 0.33 s: real and control carry nothing; p < 0.01 in <~1 % of seeds."""
    seeds = 300
    hits = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        frames = [[evaluated(_ar_movie(rng, tau_frames)) for _ in range(3)] for _ in range(3)]
        truth, real, control = frames
        hits += compare("noise", "moving", real, control, truth, block=30, seed=seed, resamples=999).p_value < ALPHA
    bound = ALPHA * seeds + 3 * np.sqrt(seeds * ALPHA * (1 - ALPHA))  # mean + 3 s.d. of Binomial(300, 0.01)
    assert hits <= bound, f"{hits} of {seeds} seeds reached p < 0.01"


def test_trial_test_is_exact_on_noise():
    rng = np.random.default_rng(0)
    hits = sum(trial_test(rng.normal(0, 1, 8), rng.normal(0, 1, 8), rng)[3] < ALPHA for _ in range(2000))
    assert hits <= 2000 * ALPHA + 3 * np.sqrt(2000 * ALPHA * (1 - ALPHA))
    effect, low, high, p, min_p = trial_test(np.full(8, 0.9), np.full(8, 0.1), rng)
    assert p == min_p == 2.0**-8 and effect == pytest.approx(0.8)


def test_resolution_falls_with_blur():
    stimuli = clips(3, 9)
    sharp = temporal_resolution(stimuli, stimuli, mask(), frame_rate=RATE)
    assert sharp.limit == pytest.approx(RATE / 2) and sharp.unit == "Hz"
    smeared = [gaussian_filter(s, (4, 0, 0)) for s in stimuli]
    slow = temporal_resolution(smeared, stimuli, mask(), frame_rate=RATE)
    assert slow.limit is not None and slow.limit < 5.0
    blurred = [gaussian_filter(s, (0, 2, 2)) for s in stimuli]
    in_pixels = spatial_resolution(blurred, stimuli, mask())
    in_degrees = spatial_resolution(blurred, stimuli, mask(), degrees_per_pixel=2.0)
    assert in_pixels.unit == "cycles/pixel" and in_degrees.unit == "cycles/degree"
    assert in_pixels.limit < spatial_resolution(stimuli, stimuli, mask()).limit
    assert in_degrees.limit == pytest.approx(in_pixels.limit / 2.0)
