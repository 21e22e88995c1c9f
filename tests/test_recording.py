import numpy as np
import pytest

from movie_reconstruction import InputError, NeuronTable, Recording
from movie_reconstruction.recording import BEHAVIOR_CHANNELS, from_arrays


def make(n_trials=5, n_neurons=7, t=20, h=6, w=8, seed=0):
    rng = np.random.default_rng(seed)
    videos = [rng.uniform(0, 255, (t, h, w)).astype(np.float32) for _ in range(n_trials)]
    responses = [rng.poisson(1.0, (n_neurons, t)).astype(np.float32) for _ in range(n_trials)]
    behavior = [rng.normal(size=(4, t)).astype(np.float32) for _ in range(n_trials)]
    tiers = ["train", "train", "validation", "test", "test"][:n_trials]
    return from_arrays(videos, responses, behavior, frame_rate=30.0, tiers=tiers), videos, responses


def test_trial_access_and_split():
    recording, videos, responses = make()
    assert len(recording) == 5 and recording.n_neurons == 7 and recording.frame_shape == (6, 8)
    trial = recording.trial(3)
    assert trial.tier == "test" and trial.n_frames == 20
    np.testing.assert_array_equal(trial.video, videos[3])
    np.testing.assert_array_equal(trial.channel("running"), trial.behavior[BEHAVIOR_CHANNELS.index("running")])
    parts = recording.split()
    assert {k: len(v) for k, v in parts.items()} == {"train": 2, "validation": 1, "test": 2}
    np.testing.assert_array_equal(parts["test"].trial(1).responses, responses[4])
    assert list(parts["test"].trial_ids) == [3, 4]


def test_neuron_subset_composes():
    recording, _, responses = make()
    sub = recording.with_neurons([1, 4, 6]).with_neurons([0, 2])
    assert sub.n_neurons == 2
    np.testing.assert_array_equal(sub.trial(0).responses, responses[0][[1, 6]])
    np.testing.assert_array_equal(sub.neurons.ids, [1, 6])
    with pytest.raises(IndexError):
        recording.with_neurons([7])


def test_bad_shapes_and_values_are_named():
    recording, _, _ = make()
    recording.responses[2] = recording.responses[2][:, :10]
    with pytest.raises(InputError, match=r"responses have shape \(7, 10\)"):
        recording.trial(2)
    recording, _, _ = make()
    recording.responses[1][3, 5] = np.nan
    with pytest.raises(InputError, match="NaN/inf"):
        recording.trial(1)
    with pytest.raises(InputError, match="unknown tier"):
        Recording([np.zeros((2, 3, 3))], [np.zeros((1, 2))], [np.zeros((4, 2))], frame_rate=30,
                  tiers=["training"], neurons=NeuronTable(np.arange(1)))
    with pytest.raises(InputError, match="trial counts differ"):
        Recording([np.zeros((2, 3, 3))] * 2, [np.zeros((1, 2))], [np.zeros((4, 2))], frame_rate=30,
                  tiers=["train"], neurons=NeuronTable(np.arange(1)))


def test_recording_refuses_repeated_trial_ids():
    """Trials are stored and looked up by id (data/videos/{id}.npy): a repeat would overwrite one."""
    with pytest.raises(InputError, match=r"trial id\(s\) 7 appear more than once"):
        Recording(videos=[np.zeros((2, 36, 64))] * 3, responses=[np.zeros((1, 2))] * 3, behavior=[np.zeros((4, 2))] * 3,
                  frame_rate=30.0, tiers=np.array(["train", "train", "test"]), neurons=NeuronTable(np.arange(1)),
                  trial_ids=np.array([7, 1, 7]))
