"""The digital twin (../shared/twin) as the simulated population."""

from __future__ import annotations

import numpy as np
import pytest

from movie_reconstruction.simulate import SimulationConfig
from movie_reconstruction.simulate.twin import HZ_PER_TWIN_UNIT, TwinRates, load_twin_module, read_twin_dataset


def test_twin_rates_wrap_the_twins_own_code(twin_dir):
    rates_fn = TwinRates(twin_dir / "make_twin_dataset.py", twin_dir / "sensorium_sota_model.pth", n_neurons=25, seed=2)
    rng = np.random.default_rng(0)
    movie = np.clip(128 + 50 * rng.standard_normal((40, 36, 64)), 0, 255).astype(np.float32)
    behaviour = {"running": np.full(40, 5.0), "pupil": np.full(40, 20.0), "pupil_x": np.zeros(40), "pupil_y": np.zeros(40)}
    rates = rates_fn(movie, behaviour)
    assert rates.shape == (25, 40) and rates.dtype == np.float32 and (rates >= 0).all()
    module = load_twin_module(twin_dir / "make_twin_dataset.py")
    assert module is load_twin_module(twin_dir / "make_twin_dataset.py")  # imported once
    grey = rates_fn(np.full((40, 36, 64), 128.0, np.float32), behaviour)
    assert np.abs(rates - grey).max() > 0.1  # the twin sees the movie
    np.testing.assert_array_equal(rates, rates_fn(movie, behaviour))
    with pytest.raises(Exception, match="36, 64"):
        rates_fn(np.zeros((5, 30, 30), np.float32), behaviour)


def test_missing_twin_script_is_a_clear_error(tmp_path):
    from movie_reconstruction.errors import InputError

    with pytest.raises(InputError, match="twin script not found"):
        load_twin_module(tmp_path / "make_twin_dataset.py")
    with pytest.raises(InputError, match="save-rates"):
        read_twin_dataset(tmp_path)


@pytest.mark.slow
def test_raw_stack_rendered_from_twin_rates_gives_traces_back(tiny_twin_dataset, tmp_path):
    from movie_reconstruction.extract import extract_traces
    from movie_reconstruction.progress import run
    from movie_reconstruction.simulate.twin import session_from_twin_dataset

    videos, rates, _, tiers = read_twin_dataset(tiny_twin_dataset)
    config = SimulationConfig.tiny().replace(imaging={"fov_shape": (128, 128)})
    session = session_from_twin_dataset(tiny_twin_dataset, tmp_path / "session", config, seed=0)
    assert session.n_neurons == rates[0].shape[0] == 120
    truth = session.load_ground_truth()
    trials = np.genfromtxt(session.path / "timing/trials.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert trials["tier"].tolist() == tiers
    for start, n, r in zip(trials["start_frame"], trials["n_frames"], rates):
        np.testing.assert_allclose(truth.rates[:, start : start + n], r * HZ_PER_TWIN_UNIT, rtol=1e-5)
    movie = np.load(session.path / "stimulus/movie.npy")
    np.testing.assert_array_equal(movie[trials["start_frame"][0] : trials["start_frame"][0] + 60], videos[0])

    job = extract_traces(
        session.raw_files, tmp_path / "s2p", fs=30.0, tau=0.4, diameter=8.0, cell_threshold=0.0, nonrigid=False, device="cpu"
    )
    planes = run(job)
    traces = planes[0]
    assert traces.n_frames == session.n_imaging_frames
    # match suite2p ROIs to the true somata by centroid distance (each soma counted once)
    centres = truth.centres
    corrected = traces.corrected()
    best: dict[int, float] = {}
    for k, centroid in enumerate(traces.centroids):
        distance = np.hypot(*(centres - centroid).T)
        j = int(distance.argmin())
        if distance[j] < 3.0:
            best[j] = max(best.get(j, -1.0), float(np.corrcoef(corrected[k], truth.dff[j])[0, 1]))
    found, r = len(best), list(best.values())
    print(f"twin session: suite2p matched {found}/{session.n_neurons} somata; median r(F - 0.7 Fneu, true dF/F) = {np.median(r):.3f}")
    assert found >= 0.6 * session.n_neurons, found
    assert np.median(r) > 0.6


@pytest.mark.slow
def test_twin_drives_a_whole_simulated_session(twin_dir, tmp_path):
    import json

    from movie_reconstruction.simulate import simulate_session

    twin = TwinRates(twin_dir / "make_twin_dataset.py", twin_dir / "sensorium_sota_model.pth", n_neurons=24, seed=0)
    session = simulate_session(tmp_path / "twin", SimulationConfig.tiny(), seed=0, rates_fn=twin)
    truth = session.load_ground_truth()
    assert session.n_neurons == 24 and truth.rates.shape == (24, session.n_stimulus_frames)
    assert "TwinRates(24 neurons" in json.loads((session.path / "simulation.json").read_text())["population"]
    # the twin's cells respond to the clips: rates vary more during trials than on the grey screen
    trials = np.genfromtxt(session.path / "timing/trials.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    inside = np.zeros(session.n_stimulus_frames, bool)
    grey = np.ones(session.n_stimulus_frames, bool)
    for start, n in zip(trials["start_frame"], trials["n_frames"]):
        inside[start + 10 : start + n] = True
        grey[start : start + n + 10] = False  # the filters' tails after each clip
    grey[:10] = False
    assert truth.rates[:, inside].std(axis=1).mean() > 2 * truth.rates[:, grey].std(axis=1).mean()
