"""The digital mouse: layout, determinism, and that each model part does what it says."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from movie_reconstruction.errors import InputError
from movie_reconstruction.simulate import (
    ImagingConfig,
    PopulationConfig,
    SimulationConfig,
    StimulusConfig,
    V1Population,
    simulate_session,
)
from movie_reconstruction.simulate.imaging import calcium_dff, draw_spikes
from movie_reconstruction.simulate.stimulus import make_trials


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_session(tmp_path_factory):
    return simulate_session(tmp_path_factory.mktemp("sim") / "session", SimulationConfig.tiny(), seed=0)


def test_same_seed_same_files_other_seed_other_files(tiny_session, tmp_path):
    again = simulate_session(tmp_path / "again", SimulationConfig.tiny(), seed=0)
    assert _digest(again.path) == _digest(tiny_session.path)
    other = simulate_session(tmp_path / "other", SimulationConfig.tiny(), seed=1)
    a, b = _digest(other.path), _digest(tiny_session.path)
    assert a.keys() == b.keys()
    for name in ("raw/imaging_000.tif", "stimulus/movie.npy", "ground_truth/spike_times.npy", "behaviour/running.csv"):
        assert a[name] != b[name], name


def test_session_folder_is_what_the_manifest_names(tiny_session):
    import tifffile

    from movie_reconstruction.io.manifest import load_manifest

    manifest = load_manifest(tiny_session.manifest)
    assert [p.name for p in manifest.raw] == [p.name for p in tiny_session.raw_files]
    assert len(tiny_session.raw_files) == 3  # 497 frames at 200 per file
    frames = [tifffile.imread(p) for p in manifest.raw]
    assert all(f.dtype == np.uint16 and f.shape[1:] == (64, 64) for f in frames)
    n_imaging = sum(f.shape[0] for f in frames)
    imaging_times = np.load(manifest.imaging_frame_times)
    stimulus_times = np.load(manifest.stimulus_frame_times)
    movie = np.load(manifest.stimulus_movie)
    assert imaging_times.dtype == np.float64 and stimulus_times.dtype == np.float64
    assert imaging_times.size == n_imaging == tiny_session.n_imaging_frames
    assert movie.shape == (stimulus_times.size, 36, 64) and movie.dtype == np.float32
    assert 0 <= movie.min() and movie.max() <= 255
    assert (np.diff(imaging_times) > 0).all() and (np.diff(stimulus_times) > 0).all()
    # the whole stimulus lies inside the imaging, on the same clock
    assert imaging_times[0] < stimulus_times[0] and stimulus_times[-1] + 0.1 < imaging_times[-1]
    # frames last whole monitor refreshes (60 Hz): 2 per frame, now and then 3 (a dropped frame)
    refreshes = np.round(np.diff(stimulus_times) * 60.0)
    assert set(np.unique(refreshes)) <= {2.0, 3.0}
    assert manifest.stimulus_frame_rate == 30.0 and manifest.stimulus_size == (36, 64)

    trials = np.genfromtxt(manifest.trials, delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert list(trials.dtype.names) == ["trial_id", "start_frame", "n_frames", "tier"]
    assert sorted(trials["tier"].tolist()) == ["test", "train", "train", "validation"]
    assert (trials["n_frames"] == 90).all()
    assert (trials["start_frame"] + trials["n_frames"] <= movie.shape[0]).all()
    # grey between trials
    first, second = np.sort(trials["start_frame"])[:2]
    assert np.all(movie[first + 90 : second] == 128.0)

    running = np.genfromtxt(manifest.behaviour_files[0], delimiter=",", names=True)
    pupil = np.genfromtxt(manifest.behaviour_files[1], delimiter=",", names=True)
    assert running.dtype.names == ("time", "running") and pupil.dtype.names == ("time", "pupil", "pupil_x", "pupil_y")
    # each on its own clock, covering the imaging
    assert np.median(np.diff(running["time"])) == pytest.approx(0.01, rel=0.01)
    assert np.median(np.diff(pupil["time"])) == pytest.approx(0.05, rel=0.01)
    assert running["time"][0] <= imaging_times[0] and running["time"][-1] >= imaging_times[-1]
    assert (running["running"] >= 0).all()


def test_test_trials_come_from_images_never_used_for_training(tiny_session):
    info = json.loads((tiny_session.path / "simulation.json").read_text())
    trials = np.genfromtxt(tiny_session.path / "timing/trials.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    sources = np.asarray(info["trial_sources"])
    assert set(sources[trials["tier"] == "test"]) <= set(SimulationConfig.tiny().stimulus.test_images)
    assert set(sources[trials["tier"] != "test"]) <= set(SimulationConfig.tiny().stimulus.train_images)
    with pytest.raises(InputError, match="camera"):
        make_trials(StimulusConfig(train_images=("camera", "moon"), test_images=("camera",)), np.random.default_rng(0))


def test_ground_truth_is_consistent(tiny_session):
    truth = tiny_session.load_ground_truth()
    n = tiny_session.n_neurons
    assert truth.rates.shape == (n, tiny_session.n_stimulus_frames) and (truth.rates >= 0).all()
    assert truth.dff.shape == (n, tiny_session.n_imaging_frames)
    assert truth.motion.shape == (tiny_session.n_imaging_frames, 2)
    assert sorted(np.unique(truth.labels)) == list(range(n + 1))  # every soma visible, no overlaps lost
    counts = truth.spikes_on_stimulus_frames
    stimulus_times = np.load(tiny_session.path / "timing/stimulus_frame_times.npy")
    inside = (truth.spike_times >= stimulus_times[0]) & (truth.spike_times < stimulus_times[-1])
    assert counts[:, :-1].sum() == inside.sum()
    # spikes follow the rates: expected vs drawn counts over the whole stimulus
    durations = np.diff(stimulus_times)
    expected = (truth.rates[:, :-1] * durations).sum()
    assert abs(counts[:, :-1].sum() - expected) < 5 * np.sqrt(expected)
    # footprints sit where the label image says
    dense = truth.footprints.toarray().reshape(n, 64, 64)
    for k in range(n):
        assert dense[k][truth.labels == k + 1].min() > 0.25


def test_raw_frames_show_the_cells_and_their_activity(tiny_session):
    import tifffile

    raw = np.concatenate([tifffile.imread(p) for p in tiny_session.raw_files]).astype(np.float64)
    truth = tiny_session.load_ground_truth()
    labels = truth.labels
    mean = raw.mean(axis=0)
    assert mean[labels > 0].mean() > 1.3 * mean[labels == 0].mean()  # somata are brighter than neuropil
    # each soma's pixel average follows its true dF/F
    r = []
    for k in range(truth.dff.shape[0]):
        trace = raw[:, labels == k + 1].mean(axis=1)
        r.append(np.corrcoef(trace, truth.dff[k])[0, 1])
    assert np.median(r) > 0.6


def test_calcium_transient_has_the_indicator_kinetics():
    frame_times = np.arange(0, 5, 1 / 100.0)
    dff = calcium_dff(np.array([1.0]), np.array([0]), 1, frame_times, 0.02, 0.4, np.array([0.15]), saturation_spikes=1e9)[0]
    assert dff[frame_times < 1.0].max() == 0.0
    assert dff.max() == pytest.approx(0.15, rel=0.02)
    peak = frame_times[dff.argmax()] - 1.0
    assert 0.03 < peak < 0.12
    later = dff[(frame_times > 1.8) & (frame_times < 3.0)]
    tau = -1.0 / np.polyfit(frame_times[(frame_times > 1.8) & (frame_times < 3.0)], np.log(later), 1)[0]
    assert tau == pytest.approx(0.4, rel=0.03)
    # a burst saturates: 40 spikes at once give less than 40x one spike
    burst = calcium_dff(np.full(40, 1.0), np.zeros(40, int), 1, frame_times, 0.02, 0.4, np.array([0.15]), 30.0)[0]
    assert 0.3 * 40 * 0.15 < burst.max() < 0.7 * 40 * 0.15


def test_poisson_spikes_match_piecewise_constant_rates():
    rng = np.random.default_rng(0)
    starts = np.arange(0, 100, 0.5)
    rates = np.tile(np.where(np.arange(starts.size) % 2, 20.0, 0.0), (3, 1))
    times, neurons = draw_spikes(rng, rates, starts, starts + 0.5)
    assert (np.diff(times) >= 0).all() and set(np.unique(neurons)) == {0, 1, 2}
    phase = np.floor(times / 0.5).astype(int) % 2
    assert (phase == 1).all()  # never in a silent interval
    assert abs(times.size - 3 * 100 * 20 * 0.5) < 5 * np.sqrt(3000)


def _population(**changes) -> V1Population:
    config = PopulationConfig(**{"n_neurons": 60, **changes})
    return V1Population.random(config, (36, 64), 30.0, np.random.default_rng(1))


def _movie(n=300, seed=0):
    from movie_reconstruction.simulate.stimulus import image_clip, load_source_image

    return image_clip(load_source_image("camera"), np.random.default_rng(seed), n, StimulusConfig())


def test_population_rates_are_sparse_rectified_and_calibrated():
    population = _population()
    movie = _movie()
    still = {"running": np.zeros(300), "pupil_x": np.zeros(300), "pupil_y": np.zeros(300)}
    rates = population(movie, still)
    assert rates.shape == (60, 300) and rates.dtype == np.float32
    assert rates.min() >= population.spontaneous_rate_hz - 1e-6
    assert rates.max() <= population.spontaneous_rate_hz + population.max_rate_hz + 1e-3
    # sparse: most of the time near the spontaneous rate, mean as asked for
    assert np.median(rates) < 0.5 * rates.mean()
    assert np.median(rates.mean(axis=1)) == pytest.approx(PopulationConfig().mean_rate_hz, rel=0.35)
    # a grey screen drives nothing beyond the spontaneous rate (after the filters settle)
    grey = population(np.full((60, 36, 64), 128.0, np.float32), {"running": np.zeros(60)})
    assert grey[:, 30:].max() < rates.max() / 4


def test_running_raises_gain_and_the_latency_delays_responses():
    population = _population()
    movie = _movie()
    rest = population(movie, {"running": np.zeros(300)})
    run = population(movie, {"running": np.full(300, 30.0)})
    driven = rest > 5
    assert (run[driven] >= rest[driven] - 1e-4).all() and run.mean() > 1.1 * rest.mean()
    # a flash at frame 100 cannot change anything before the shortest latency
    flashed = movie.copy()
    flashed[100:] = 255 - flashed[100:]
    changed = np.abs(population(flashed, {"running": np.zeros(300)}) - rest).max(axis=0) > 1e-3
    assert not changed[:100].any() and changed[100:110].any()


def test_receptive_fields_follow_the_eye():
    population = _population(n_neurons=40)
    n = 120
    movie = _movie(n)
    degrees = 3 * population.degrees_per_pixel  # 3 pixels
    shifted = np.roll(movie, 3, axis=2)  # the scene moves 3 px right...
    with_eye = population(shifted, {"pupil_x": np.full(n, degrees), "pupil_y": np.zeros(n)})  # ...and so does the eye
    centred = population(movie, {"pupil_x": np.zeros(n), "pupil_y": np.zeros(n)})
    inner = (population.rf_x > 10) & (population.rf_x < 50)  # away from the rolled edge
    assert np.corrcoef(with_eye[inner].ravel(), centred[inner].ravel())[0, 1] > 0.95
    unmoved_eye = population(shifted, {"pupil_x": np.zeros(n), "pupil_y": np.zeros(n)})
    assert np.corrcoef(unmoved_eye[inner].ravel(), centred[inner].ravel())[0, 1] < 0.9


def test_retinotopy_and_coverage():
    rng = np.random.default_rng(0)
    positions = rng.random((200, 2))
    config = PopulationConfig(n_neurons=200, coverage=0.4, rf_scatter_pixels=0.0)
    population = V1Population.random(config, (36, 64), 30.0, rng, cortical_positions=positions)
    assert np.corrcoef(positions[:, 1], population.rf_x)[0, 1] > 0.99
    assert np.corrcoef(positions[:, 0], population.rf_y)[0, 1] > 0.99
    assert population.rf_x.min() >= 0.3 * 63 - 1e-6 and population.rf_x.max() <= 0.7 * 63 + 1e-6
    wide = V1Population.random(PopulationConfig(n_neurons=200, coverage=1.0, rf_scatter_pixels=0.0), (36, 64), 30.0, rng,
                               cortical_positions=positions)
    assert np.ptp(wide.rf_x) > 2 * np.ptp(population.rf_x)


def test_luminance_cells_follow_local_brightness_with_their_sign():
    population = _population(n_neurons=80, luminance_fraction=0.5, coverage=0.3)
    luminance = population.spatial_frequency == 0
    assert 20 < luminance.sum() < 60 and not population.is_complex[luminance].any()
    n = 90
    grey = np.full((n, 36, 64), 128.0, np.float32)
    bright, dark = grey.copy(), grey.copy()
    bright[30:, 8:28, 16:48] = 200.0  # a patch over the covered centre of the screen
    dark[30:, 8:28, 16:48] = 56.0
    population.calibrate(_movie(), {"running": np.zeros(300)})
    still = {"running": np.zeros(n)}
    on_cells = luminance & (np.cos(population.phase) > 0)
    off_cells = luminance & (np.cos(population.phase) < 0)
    on_bright, on_dark = population(bright, still)[on_cells, 35:60], population(dark, still)[on_cells, 35:60]
    off_bright, off_dark = population(bright, still)[off_cells, 35:60], population(dark, still)[off_cells, 35:60]
    assert on_bright.mean() > 2 * on_dark.mean() and off_dark.mean() > 2 * off_bright.mean()


def test_the_population_as_a_torch_encoder_computes_the_same_rates():
    torch = pytest.importorskip("torch")
    from movie_reconstruction.simulate.oracle import PopulationEncoder

    population = _population(n_neurons=50, luminance_fraction=0.3)
    movie = _movie(120)
    rng = np.random.default_rng(3)
    behaviour = {
        "running": np.abs(rng.normal(10, 10, 120)).astype(np.float32),
        "pupil_x": rng.normal(0, 3, 120).astype(np.float32),
        "pupil_y": rng.normal(0, 3, 120).astype(np.float32),
    }
    expected = population(movie, behaviour)
    encoder = PopulationEncoder(population)
    stacked = np.stack([behaviour[name] for name in encoder.behavior_channels])
    with torch.no_grad():
        counts = encoder(torch.from_numpy(movie[None].astype(np.float32)), torch.from_numpy(stacked[None]))[0].numpy()
    np.testing.assert_allclose(counts * population.frame_rate, expected, atol=2e-3 * expected.max())
    # and it can be inverted: a noisy movie gets a gradient (at exact grey the rectifier is flat)
    video = torch.full((1, 60, 36, 64), 128.0) + 30 * torch.randn(1, 60, 36, 64)
    video.requires_grad_(True)
    encoder(video, torch.from_numpy(stacked[None, :, :60])).sum().backward()
    assert video.grad.abs().sum() > 0
    assert encoder.readout_positions().shape == (50, 2)


def test_any_rates_function_can_replace_the_population(tmp_path):
    calls = {}

    def flicker_cells(movie, behaviour):
        calls["shape"] = movie.shape
        calls["channels"] = sorted(behaviour)
        brightness = movie.mean(axis=(1, 2))
        return np.stack([np.maximum(brightness - 100, 0) / 5] * 7).astype(np.float32)

    session = simulate_session(tmp_path / "s", SimulationConfig.tiny(), seed=0, rates_fn=flicker_cells)
    assert session.n_neurons == 7
    assert calls["channels"] == ["pupil", "pupil_x", "pupil_y", "running"]
    assert calls["shape"] == (session.n_stimulus_frames, 36, 64)
    truth = session.load_ground_truth()
    assert truth.rates.shape[0] == 7 and not (session.ground_truth_dir / "population.npz").exists()

    def broken(movie, behaviour):
        return np.full((3, 5), 1.0)

    with pytest.raises(InputError, match="expected"):
        simulate_session(tmp_path / "broken", SimulationConfig.tiny(), seed=0, rates_fn=broken)
    assert not (tmp_path / "broken").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # nothing half-written

    def negative(movie, behaviour):
        return -np.ones((2, movie.shape[0]))

    with pytest.raises(InputError, match="negative"):
        simulate_session(tmp_path / "neg", SimulationConfig.tiny(), seed=0, rates_fn=negative)


def test_refuses_to_overwrite_and_bad_settings(tiny_session, tmp_path):
    with pytest.raises(InputError, match="not empty"):
        simulate_session(tiny_session.path, SimulationConfig.tiny())
    crowded = SimulationConfig.tiny().replace(population={"n_neurons": 400})
    with pytest.raises(InputError, match="cannot place 400"):
        simulate_session(tmp_path / "crowded", crowded)
    with pytest.raises(InputError, match="indicator"):
        ImagingConfig(indicator="GCaMP99").indicator_kinetics()
    with pytest.raises(InputError, match="unknown imaging"):
        SimulationConfig.tiny().replace(imaging={"fps": 3})
    with pytest.raises(InputError, match="preset"):
        SimulationConfig.preset("huge")


def test_config_round_trips_through_json(tiny_session):
    info = json.loads((tiny_session.path / "simulation.json").read_text())
    assert SimulationConfig.from_dict(info["config"]) == SimulationConfig.tiny()


def test_indicator_and_frame_rate_are_parameters(tmp_path):
    config = SimulationConfig.tiny().replace(
        imaging={"frame_rate": 15.0, "indicator": "GCaMP6s", "fov_shape": (72, 80)}, stimulus={"n_train": 1}
    )
    session = simulate_session(tmp_path / "slow", config, seed=3)
    times = np.load(session.path / "timing/imaging_frame_times.npy")
    assert np.diff(times).mean() == pytest.approx(1 / 15.0)
    truth = session.load_ground_truth()
    assert truth.labels.shape == (72, 80)
    # GCaMP6s decays slowly: the dF/F autocorrelation at 1 s stays high
    d = truth.dff - truth.dff.mean(axis=1, keepdims=True)
    lag = 15
    auto = (d[:, lag:] * d[:, :-lag]).sum() / (d * d).sum()
    assert auto > 0.3


def test_video_clips_are_read_with_pyav(shared_data):
    config = StimulusConfig(
        trial_seconds=1.0, n_train=2, n_validation=0, n_test=1,
        train_images=(), train_videos=(str(shared_data / "movies" / "realshort.mp4"),),
        test_images=("chelsea",),
    )
    trials = make_trials(config, np.random.default_rng(0))
    videos = [t for t in trials if t.tier == "train"]
    assert len(videos) == 2 and all(t.video.shape == (30, 36, 64) for t in videos)
    assert all(t.source.endswith("realshort.mp4") for t in videos)
    assert all(np.abs(np.diff(t.video, axis=0)).mean() > 0.1 for t in videos)  # it moves
    with pytest.raises(InputError, match="not found"):
        make_trials(config.__class__(train_videos=("/nonexistent.mp4",), train_images=()), np.random.default_rng(0))


def test_napari_sample_layers():
    from movie_reconstruction.simulate.sample import simulated_session_sample

    layers = simulated_session_sample()
    kinds = [kind for _, _, kind in layers]
    assert kinds == ["image", "image", "labels"]
    raw, movie, labels = (data for data, _, _ in layers)
    assert raw.ndim == 3 and raw.shape[1:] == labels.shape and raw.dtype == np.uint16
    assert movie.shape[1:] == (36, 64)
    assert labels.max() == SimulationConfig.tiny().population.n_neurons
    assert all(isinstance(kwargs["name"], str) for _, kwargs, _ in layers)


def test_importing_the_simulator_pulls_in_no_qt_or_torch():
    import subprocess
    import sys

    code = (
        "import sys; import movie_reconstruction.simulate, movie_reconstruction.simulate.sample, "
        "movie_reconstruction.simulate.twin; "
        "bad = [m for m in ('PyQt6', 'PyQt5', 'qtpy', 'napari', 'torch', 'suite2p') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(src), "PATH": ""})
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_projects_own_readers_align_the_session(tiny_session):
    """The manifest reader and the alignment stage load a simulated session like a lab one."""
    from movie_reconstruction.align import recording_from_manifest
    from movie_reconstruction.io.manifest import load_manifest
    from movie_reconstruction.traces import RoiMask, Traces

    truth = tiny_session.load_ground_truth()
    n = truth.dff.shape[0]
    masks = []
    for k in range(n):
        ypix, xpix = np.nonzero(truth.labels == k + 1)
        masks.append(RoiMask(ypix, xpix, np.ones(ypix.size, np.float32)))
    traces = Traces(
        F=truth.dff, Fneu=np.zeros_like(truth.dff), spks=truth.dff, roi_masks=masks, roi_index=np.arange(n),
        cell_probability=np.ones(n), frame_shape=truth.labels.shape, mean_image=np.zeros(truth.labels.shape),
        max_projection=None, frame_rate=30.0,
    )
    recording = recording_from_manifest(load_manifest(tiny_session.path), [traces])
    assert len(recording) == 4 and recording.n_neurons == n
    assert sorted(recording.tiers.tolist()) == ["test", "train", "train", "validation"]
    assert recording.extra["missing_behaviour"] == []
    movie = np.load(tiny_session.path / "stimulus/movie.npy")
    trials = np.genfromtxt(tiny_session.path / "timing/trials.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    trial = recording.trial(0)
    start = trials["start_frame"][0]
    np.testing.assert_allclose(trial.video, movie[start : start + 90], atol=0.5)
    assert trial.channel("running").max() >= 0 and np.ptp(trial.channel("pupil")) > 0
    # the aligned activity is the imaging-frame signal on the stimulus frames' clock
    imaging_times = np.load(tiny_session.path / "timing/imaging_frame_times.npy")
    stimulus_times = np.load(tiny_session.path / "timing/stimulus_frame_times.npy")
    middle = stimulus_times[start : start + 90] + 1 / 60.0
    expected = np.stack([np.interp(middle, imaging_times + 1 / 60.0, truth.dff[k]) for k in range(n)])
    r = [np.corrcoef(trial.responses[k], expected[k])[0, 1] for k in range(n) if expected[k].std() > 1e-3]
    assert np.median(r) > 0.95


def test_sample_session_is_made_once_and_reused(tmp_path):
    from movie_reconstruction.simulate.sample import ensure_sample_session

    first = ensure_sample_session(tmp_path / "sample", preset="tiny", seed=0)
    stamp = (first.path / "raw/imaging_000.tif").stat().st_mtime_ns
    again = ensure_sample_session(tmp_path / "sample", preset="tiny", seed=0)
    assert (again.path / "raw/imaging_000.tif").stat().st_mtime_ns == stamp
    other = ensure_sample_session(tmp_path / "sample", preset="tiny", seed=4)
    assert other.seed == 4 and (other.path / "raw/imaging_000.tif").stat().st_mtime_ns != stamp


def test_command_line(tmp_path, capsys):
    from movie_reconstruction.simulate.__main__ import main

    assert main([str(tmp_path / "s"), "--preset", "tiny", "--neurons", "9", "--indicator", "GCaMP6s", "--seed", "2"]) == 0
    info = json.loads((tmp_path / "s" / "simulation.json").read_text())
    assert info["n_neurons"] == 9 and info["seed"] == 2 and info["config"]["imaging"]["indicator"] == "GCaMP6s"
    assert main([str(tmp_path / "s"), "--preset", "tiny"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_behaviour_bouts_arousal_and_saccades():
    from movie_reconstruction.simulate import BehaviourConfig
    from movie_reconstruction.simulate.behaviour import make_behaviour

    b = make_behaviour(np.random.default_rng(0), 0.0, 600.0, BehaviourConfig())
    running = b.running > 3.0
    switches = np.count_nonzero(np.diff(running.astype(int)))
    assert 0.2 < running.mean() < 0.8 and switches >= 20  # bouts, not noise or one long run
    # the pupil dilates with running (arousal), with a lag
    speed_on_pupil_clock = np.interp(b.pupil_times, b.running_times, b.running)
    assert np.corrcoef(speed_on_pupil_clock, b.pupil)[0, 1] > 0.4
    # saccades: rare large steps in eye position on top of small drift
    steps = np.hypot(np.diff(b.pupil_x), np.diff(b.pupil_y))
    assert np.percentile(steps, 50) < 0.3 and (steps > 3.0).sum() >= 0.25 * 600 * 0.3


def test_image_clips_drift_jump_zoom_and_change_contrast():
    from movie_reconstruction.simulate.stimulus import image_clip, load_source_image

    clip = image_clip(load_source_image("astronaut"), np.random.default_rng(3), 600, StimulusConfig())
    assert clip.shape == (600, 36, 64) and clip.dtype == np.float32
    change = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2))
    assert np.median(change) < 4 and (change > 15).sum() >= 5  # smooth drift, sudden jumps
    contrast = clip.std(axis=(1, 2))
    assert contrast.max() > 1.5 * contrast.min()


def test_rendering_reports_each_block_and_a_cancel_leaves_nothing_behind(tmp_path):
    """The raw movie is rendered in blocks with a progress event after each, so closing the job
    (napari's Cancel) lands within a block; the folder is never left half-written."""
    from movie_reconstruction.simulate import simulate_session_job

    config = SimulationConfig.tiny()
    events = [e for e in _drive_all(simulate_session_job(tmp_path / "whole", config, seed=0))
              if e.stage == "raw frames"]
    assert len(events) >= 2 and events[-1].step == events[-1].total  # one per 256-frame block
    assert [e.step for e in events] == sorted({e.step for e in events})

    job = simulate_session_job(tmp_path / "cancelled", config, seed=0)
    for event in job:
        if event.stage == "raw frames":
            job.close()
            break
    assert not (tmp_path / "cancelled").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["whole"]  # no staging folder left either


def _drive_all(job):
    while True:
        try:
            yield next(job)
        except StopIteration:
            return
