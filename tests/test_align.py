"""Time alignment against signals whose timing and rate are known exactly."""

import numpy as np
import pytest

from movie_reconstruction import InputError
from movie_reconstruction.align import TrialTable, align_session, traces_on_frames

STIMULUS_RATE = 30.0


class SmoothRate:
    """A sum of sinusoids (up to 3 Hz) whose average over any interval is known in closed form."""

    def __init__(self, seed, n=12):
        rng = np.random.default_rng(seed)
        self.w = 2 * np.pi * rng.uniform(0.1, 3.0, n)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.amp = rng.uniform(0.5, 1.0, n)

    def mean_over(self, a, b):
        a, b = np.asarray(a)[..., None], np.asarray(b)[..., None]
        integral = self.amp / self.w * (np.cos(self.w * a + self.phase) - np.cos(self.w * b + self.phase))
        return 5.0 + integral.sum(-1) / (b[..., 0] - a[..., 0])


def stimulus_clock(seed, n_frames=1800, start=3.0):
    rng = np.random.default_rng(seed)
    steps = 1 / STIMULUS_RATE + rng.normal(0, 0.0008, n_frames)  # a real monitor jitters
    return start + np.concatenate([[0], np.cumsum(steps[:-1])])


def imaging_samples(rate, imaging_rate, latency, start=0.37, duration=70.0):
    times = np.arange(start, start + duration, 1 / imaging_rate)
    # a deconvolved sample is the activity integrated over its frame; the neuron lags the screen by `latency`
    return times, rate.mean_over(times - latency, times + 1 / imaging_rate - latency)[None]


def recovered_lag(recovered, rate, frame_times):
    """The delay (s) that best lines up the truth with the recovered trace, searched at 1 ms steps."""
    ends = np.append(frame_times[1:], frame_times[-1] + 1 / STIMULUS_RATE)
    lags = np.arange(-0.3, 0.3, 0.001)
    scores = [np.corrcoef(recovered, rate.mean_over(frame_times - lag, ends - lag))[0, 1] for lag in lags]
    return lags[int(np.argmax(scores))], max(scores)


@pytest.mark.parametrize("imaging_rate", [7.5, 15.0, 30.0, 60.0])
@pytest.mark.parametrize("latency", [0.0, 0.1])
def test_known_delay_is_recovered_within_one_frame(imaging_rate, latency):
    rate = SmoothRate(seed=int(imaging_rate))
    frame_times = stimulus_clock(seed=1)
    times, trace = imaging_samples(rate, imaging_rate, latency)
    recovered = traces_on_frames(trace, times, frame_times)[0]
    lag, score = recovered_lag(recovered, rate, frame_times)
    assert abs(lag - latency) < 1 / STIMULUS_RATE, (lag, latency)
    assert score > 0.9  # sample-and-hold at 7.5 Hz limits fidelity for content up to 3 Hz
    # the rate is recovered, not just its shape
    assert abs(recovered.mean() - 5.0) < 0.1


def test_plane_offsets_are_applied():
    rate = SmoothRate(seed=4)
    frame_times = stimulus_clock(seed=2)
    offset = 0.05  # plane 1 is acquired 50 ms after the volume's timestamp
    volume_times = np.arange(0.2, 70.0, 1 / 10.0)
    plane_times = volume_times + offset
    trace = rate.mean_over(plane_times, plane_times + 0.1)[None]
    with_offset = traces_on_frames(trace, volume_times, frame_times, plane_offset=offset)[0]
    lag, _ = recovered_lag(with_offset, rate, frame_times)
    assert abs(lag) < 1 / STIMULUS_RATE


def test_mismatched_lengths_and_ranges_are_named():
    frame_times = stimulus_clock(seed=0, n_frames=100)
    with pytest.raises(InputError, match="traces have 99 frames but there are 100 imaging timestamps"):
        traces_on_frames(np.zeros((3, 99)), np.arange(100) / 30.0, frame_times, source="plane0/spks.npy")
    with pytest.raises(InputError, match="imaging covers only"):
        traces_on_frames(np.zeros((3, 50)), np.arange(50) / 30.0, frame_times)
    with pytest.raises(InputError, match="NaN/inf"):
        traces_on_frames(np.full((3, 400), np.nan), np.arange(400) / 30.0, frame_times)


def _session(n_stimulus_frames=300, n_movie_frames=300):
    frame_times = stimulus_clock(seed=3, n_frames=n_stimulus_frames, start=1.0)
    imaging_times = np.arange(0, 14, 1 / 15.0)
    traces = [np.random.default_rng(0).poisson(2.0, (6, imaging_times.size)).astype(np.float32)]
    movie = np.random.default_rng(1).uniform(0, 255, (n_movie_frames, 36, 64)).astype(np.float32)
    trials = TrialTable(np.arange(3), np.array([0, 100, 200]), np.array([90, 90, 90]), np.array(["train", "validation", "test"]))
    behaviour_times = np.arange(0, 14, 0.01)
    behaviour = [(behaviour_times, {"running": np.sin(behaviour_times)}), (behaviour_times[::3], {"pupil": np.ones(len(behaviour_times[::3]))})]
    return dict(traces=traces, imaging_times=imaging_times, stimulus_frames=movie, stimulus_times=frame_times, trials=trials, behaviour=behaviour)


def test_align_session_builds_trials():
    parts = _session()
    recording = align_session(**parts)
    assert len(recording) == 3 and recording.n_neurons == 6
    trial = recording.trial(1)
    np.testing.assert_array_equal(trial.video, parts["stimulus_frames"][100:190])
    assert trial.responses.shape == (6, 90)
    centres = (parts["stimulus_times"][100:190] + parts["stimulus_times"][101:191]) / 2
    np.testing.assert_allclose(trial.channel("running"), np.sin(centres), atol=1e-4)
    assert recording.extra["missing_behaviour"] == ["pupil_x", "pupil_y"]
    assert recording.frame_rate == pytest.approx(30.0, rel=0.01)


def test_stimulus_shorter_than_its_timestamps():
    parts = _session(n_movie_frames=250)
    with pytest.raises(InputError, match="stimulus movie has 250 frames but there are 300 stimulus frame timestamps"):
        align_session(**parts, source="session.toml")


def test_trial_beyond_timestamps():
    parts = _session()
    parts["trials"] = TrialTable(np.arange(1), np.array([250]), np.array([90]), np.array(["train"]))
    with pytest.raises(InputError, match="ends at stimulus frame 340, but only 300 frames have timestamps"):
        align_session(**parts)


def test_duplicate_trial_ids_are_refused_by_id():
    parts = _session()
    parts["trials"] = TrialTable(np.array([0, 2, 2]), np.array([0, 100, 200]), np.array([90, 90, 90]),
                                 np.array(["train", "train", "test"]))
    with pytest.raises(InputError, match=r"session.toml: trial id\(s\) 2 appear more than once"):
        align_session(**parts, source="session.toml")
    # a negative id would index the last slot of the saved tier table and hide another trial
    parts["trials"].trial_ids = np.array([0, -1, 2])
    with pytest.raises(InputError, match=r"trial ids must be >= 0, got \[-1\]"):
        align_session(**parts)


@pytest.mark.parametrize(
    "starts, tiers, named",
    [
        ([0, 60, 200], ["train", "validation", "test"], r"trial 0 \(train, frames 0-89\) and trial 1 \(validation, frames 60-149\)"),
        ([0, 100, 20], ["train", "train", "test"], r"trial 0 \(train, frames 0-89\) and trial 2 \(test, frames 20-109\)"),
        ([0, 100, 189], ["train", "train", "train"], r"trial 1 \(train, frames 100-189\) and trial 2 \(train, frames 189-278\)"),
    ],
)
def test_overlapping_trials_are_refused_naming_both(starts, tiers, named):
    parts = _session()
    parts["trials"] = TrialTable(np.arange(3), np.array(starts), np.array([90, 90, 90]), np.array(tiers))
    with pytest.raises(InputError, match="overlapping trials share stimulus frames: " + named):
        align_session(**parts)


def test_trials_that_touch_without_sharing_a_frame_are_fine():
    parts = _session()
    parts["trials"] = TrialTable(np.array([5, 3, 4]), np.array([180, 0, 90]), np.array([90, 90, 90]),
                                 np.array(["test", "train", "validation"]))
    assert align_session(**parts).trial_ids.tolist() == [5, 3, 4]


def test_stimulus_longer_than_its_timestamps_needs_consent():
    parts = _session(n_movie_frames=320)
    with pytest.raises(InputError, match="the stimulus movie has 320 frames but there are only 300 stimulus frame "
                                         "timestamps: 20 frames have no timestamp"):
        align_session(**parts, source="session.toml")
    recording = align_session(**parts, allow_unshown_frames=True)
    assert recording.extra["unshown_stimulus_frames"] == 20
    np.testing.assert_array_equal(recording.trial(2).video, parts["stimulus_frames"][200:290])
