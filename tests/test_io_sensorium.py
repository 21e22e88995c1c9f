"""Sensorium 2023 folders, on a dataset written by the digital twin's own script."""

import shutil

import numpy as np
import pytest

from movie_reconstruction import InputError
from movie_reconstruction.io.sensorium import read_sensorium, write_sensorium
from movie_reconstruction.recording import LazyArrays


def test_read_twin_dataset(tiny_twin_dataset):
    recording = read_sensorium(tiny_twin_dataset)
    assert len(recording) == 7 and recording.n_neurons == 120 and recording.frame_rate == 30.0
    assert list(recording.tiers) == ["train"] * 4 + ["validation"] + ["test"] * 2
    assert isinstance(recording.responses, LazyArrays)
    trial = recording.trial(5)
    raw_video = np.load(tiny_twin_dataset / "data" / "videos" / "5.npy")
    np.testing.assert_array_equal(trial.video, np.moveaxis(raw_video, -1, 0))
    assert trial.video.shape == (60, 36, 64)
    np.testing.assert_array_equal(trial.channel("running"), np.load(tiny_twin_dataset / "data" / "behavior" / "5.npy")[1])
    np.testing.assert_array_equal(trial.channel("pupil_y"), np.load(tiny_twin_dataset / "data" / "pupil_center" / "5.npy")[1])
    assert recording.neurons.positions.shape[0] == 120


def test_round_trip(tiny_twin_dataset, tmp_path):
    original = read_sensorium(tiny_twin_dataset)
    out = write_sensorium(original.with_neurons(np.arange(0, 120, 2)), tmp_path / "copy")
    copy = read_sensorium(out)
    assert copy.n_neurons == 60 and list(copy.tiers) == list(original.tiers)
    np.testing.assert_array_equal(copy.neurons.ids, original.neurons.ids[::2])
    for k in range(len(original)):
        a, b = original.trial(k), copy.trial(k)
        np.testing.assert_array_equal(a.video, b.video)
        np.testing.assert_array_equal(a.responses[::2], b.responses)
        np.testing.assert_array_equal(a.behavior, b.behavior)
    with pytest.raises(InputError, match="already exists"):
        write_sensorium(original, out)


def test_missing_trial_file_is_named(tiny_twin_dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_twin_dataset, broken)
    (broken / "data" / "responses" / "3.npy").unlink()
    with pytest.raises(InputError, match=r"3\.npy: 1 trial file\(s\) missing from data/responses"):
        read_sensorium(broken)


def test_nan_responses_are_refused(tiny_twin_dataset, tmp_path):
    broken = tmp_path / "nan"
    shutil.copytree(tiny_twin_dataset, broken)
    responses = np.load(broken / "data" / "responses" / "2.npy")
    responses[7, 11] = np.inf
    np.save(broken / "data" / "responses" / "2.npy", responses)
    recording = read_sensorium(broken)
    recording.trial(1)  # other trials are fine
    with pytest.raises(InputError, match=r"2\.npy: responses contains 1 NaN/inf value\(s\), first at index \(7, 11\)"):
        recording.trial(2)


def test_failed_write_leaves_nothing(tiny_twin_dataset, tmp_path):
    recording = read_sensorium(tiny_twin_dataset)
    recording.responses = list(recording.responses)
    recording.responses[4] = np.full((120, 60), np.nan, np.float32)
    with pytest.raises(InputError):
        write_sensorium(recording, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_not_a_sensorium_folder(tmp_path):
    with pytest.raises(InputError, match="tiers.npy is missing"):
        read_sensorium(tmp_path)
