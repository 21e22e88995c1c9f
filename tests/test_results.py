"""The results folder: atomic per-trial files, provenance, resume bookkeeping and a reader
that restores everything without recomputation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from movie_reconstruction.errors import InputError
from movie_reconstruction.results import PROVENANCE, ResultsFolder, describe_inputs, file_sha256, load_results


# ---------------------------------------------------------------------------------------- shared helpers
def tiny_recording(folder: Path, *, n_trials: int = 8, n_test: int = 3, frames: int = 50, neurons: int = 30, seed: int = 0):
    """A small Sensorium-layout recording: smooth random movies, Poisson responses of Gabor-like cells."""
    from scipy.ndimage import gaussian_filter, zoom

    from movie_reconstruction.io.sensorium import write_sensorium
    from movie_reconstruction.recording import from_arrays

    rng = np.random.default_rng(seed)
    h, w = 36, 64
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(8, 28, neurons), rng.uniform(16, 48, neurons)
    filters = np.exp(-((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) / 32.0)
    filters = filters * np.cos(0.4 * (xx[None] - cx[:, None, None]))
    videos, responses, behavior = [], [], []
    for _ in range(n_trials):
        v = zoom(rng.normal(0, 1, (frames // 10 + 2, h // 4, w // 4)), (10, 4, 4), order=1)[:frames]
        v = gaussian_filter(v, 1.0)
        v = np.clip(128 + 60 * v / v.std(), 0, 255).astype(np.float32)
        drive = np.einsum("nhw,thw->nt", filters, (v - 128) / 64) / 20
        responses.append(rng.poisson(np.log1p(np.exp(2 * drive)) + 0.1).astype(np.float32))
        videos.append(v)
        behavior.append(np.stack([np.full(frames, 5.0), rng.uniform(0, 1, frames), np.zeros(frames), np.zeros(frames)]))
    tiers = ["train"] * (n_trials - n_test - 1) + ["validation"] + ["test"] * n_test
    recording = from_arrays(videos, responses, behavior, frame_rate=30.0, tiers=tiers,
                            neuron_positions=np.stack([cy, cx], 1), name="tiny")
    return write_sensorium(recording, folder, overwrite=True)


def untrained_checkpoints(results: ResultsFolder, n_models: int = 2) -> list[Path]:
    """Encoders for the results' recording, initialised but not trained (enough to exercise the plumbing)."""
    import torch

    from movie_reconstruction.io.sensorium import read_sensorium
    from movie_reconstruction.model import Encoder, save_encoder

    recording = read_sensorium(results.recording_dir)
    paths = []
    for k in range(n_models):
        torch.manual_seed(k)
        encoder = Encoder(recording.n_neurons, recording.frame_shape, recording.behavior_channels,
                          neuron_positions=recording.neurons.positions, neuron_ids=recording.neurons.ids)
        encoder.init_bias_from_mean(np.mean([recording.trial(i).responses.mean(1) for i in range(len(recording))], 0))
        paths.append(save_encoder(encoder.eval(), results.model_dir(k)))
    return paths


# ---------------------------------------------------------------------------------------- tests
def _write_trial(folder: ResultsFolder, trial_id: int, identity: str = "abc", frames: int = 40):
    rng = np.random.default_rng(trial_id)
    stimulus = rng.uniform(0, 255, (frames, 36, 64)).astype(np.float32)
    reconstruction = np.clip(stimulus + rng.normal(0, 40, stimulus.shape), 0, 255).astype(np.float32)
    frame_corr = np.r_[np.full(30, np.nan), rng.uniform(0, 1, frames - 30)]
    return folder.write_trial(
        trial_id=trial_id, tier="test", stimulus=stimulus, reconstruction=reconstruction,
        member_movies=np.stack([reconstruction, reconstruction]), correlation=0.5 + trial_id / 100, ssim=0.3,
        frame_correlation=frame_corr, population_activity=rng.uniform(0, 1, frames), identity=identity,
        info={"iterations": [10, 12]},
    ), stimulus, reconstruction


def test_trial_roundtrip_and_reader(tmp_path):
    folder = ResultsFolder.create(tmp_path / "res")
    path, stimulus, reconstruction = _write_trial(folder, 7)
    assert sorted(p.name for p in path.iterdir()) == ["member_movies.npy", "reconstruction.tif", "stimulus.tif", "trial.json"]
    assert not list((tmp_path / "res" / "reconstructions").glob(".*")), "atomic write left a temporary behind"
    trial = folder.read_trial(7)
    np.testing.assert_array_equal(trial.stimulus, stimulus)
    np.testing.assert_array_equal(trial.reconstruction, reconstruction)
    assert trial.correlation == pytest.approx(0.57)
    assert np.isnan(trial.frame_correlation[:30]).all() and np.isfinite(trial.frame_correlation[30:]).all()
    assert trial.members == 2 and trial.n_frames == 40

    import tifffile

    with tifffile.TiffFile(path / "reconstruction.tif") as tif:  # ImageJ reads it as a T stack
        assert tif.is_imagej and tif.series[0].axes == "TYX"

    folder.write_metrics([{"trial_id": 7, "correlation": 0.57}], {"mean_correlation": 0.57})
    folder.write_controls({"rows": [{"condition": "real", "mean_r": 0.5}], "all_pass": True})
    loaded = load_results(folder.path)
    assert [t.trial_id for t in loaded.trials] == [7]
    assert loaded.metrics["summary"]["mean_correlation"] == 0.57
    assert loaded.controls["all_pass"] is True
    assert (folder.path / "metrics.csv").read_text().splitlines()[0] == "trial_id,correlation"


def test_finished_trials_filters_by_identity(tmp_path):
    folder = ResultsFolder.create(tmp_path)
    _write_trial(folder, 1, identity="one")
    _write_trial(folder, 2, identity="two")
    # a half-written trial (no trial.json) does not count as finished
    (folder.trial_dir(3)).mkdir(parents=True)
    assert set(folder.finished_trials()) == {1, 2}
    assert set(folder.finished_trials("one")) == {1}


def test_provenance_merges_stages_and_hashes_inputs(tmp_path):
    data = tmp_path / "input.bin"
    data.write_bytes(b"raw imaging bytes")
    folder = ResultsFolder.create(tmp_path / "res", command=["movie-recon", "demo"])
    folder.record("extract", seconds=1.5, settings={"fs": 30.0}, inputs=describe_inputs([("raw", data)]), seeds={"a": 1})
    folder.record("train", seconds=2.0, device="cpu (1 threads)", seeds={"training": [0, 1]})
    folder.record("extract", seconds=1.0, inputs=describe_inputs([("raw", data)]))  # a re-run does not duplicate inputs
    prov = json.loads((folder.path / PROVENANCE).read_text())
    assert prov["timings_s"] == {"extract": 2.5, "train": 2.0}  # a re-run adds its time
    assert prov["seeds"] == {"a": 1, "training": [0, 1]}
    assert prov["inputs"] == [{"role": "raw", "path": str(data.resolve()), "bytes": 17, "sha256": file_sha256(data)}]
    assert prov["device"] == "cpu (1 threads)" and prov["command"] == ["movie-recon", "demo"]
    assert "numpy" in prov["versions"] and "python" in prov["versions"]


def test_refuses_foreign_folders(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.tif").write_bytes(b"x")
    with pytest.raises(InputError, match="not a results folder"):
        ResultsFolder.create(tmp_path / "data")
    with pytest.raises(InputError, match="provenance.json is missing"):
        ResultsFolder.open(tmp_path / "data")
    with pytest.raises(InputError, match="not found"):
        load_results(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / PROVENANCE).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        ResultsFolder.open(tmp_path / "bad")


def test_rois_roundtrip(tmp_path):
    from movie_reconstruction.traces import RoiMask, Traces

    mask = RoiMask(np.array([1, 1, 2]), np.array([3, 4, 3]), np.ones(3, np.float32))
    traces = Traces(F=np.zeros((1, 5)), Fneu=np.zeros((1, 5)), spks=np.zeros((1, 5)), roi_masks=[mask],
                    roi_index=np.array([0]), cell_probability=np.array([1.0]), frame_shape=(8, 8),
                    mean_image=np.arange(64, dtype=np.float32).reshape(8, 8), max_projection=None, frame_rate=30.0)
    folder = ResultsFolder.create(tmp_path)
    folder.write_rois([traces])
    rois = folder.read_rois()
    assert set(rois) == {0}
    assert rois[0]["labels"][1, 3] == 1 and rois[0]["labels"].sum() == 3
    np.testing.assert_array_equal(rois[0]["mean_image"], traces.mean_image)
