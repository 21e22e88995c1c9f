"""A simulated session written with raw DAQ sync signals builds the same recording as the one
written with timestamp files (same seed), through the manifest's [sync] section; its running
channel comes from the DAQ's wheel encoder."""

import numpy as np
import pytest

from movie_reconstruction import InputError
from movie_reconstruction.align import recording_from_manifest
from movie_reconstruction.io.manifest import load_manifest
from movie_reconstruction.simulate import SimulationConfig, simulate_session
from movie_reconstruction.traces import RoiMask, Traces


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    root = tmp_path_factory.mktemp("sync_sessions")
    config = SimulationConfig.tiny()
    with_timestamps = simulate_session(root / "timestamps", config, seed=4)
    with_sync = simulate_session(root / "sync", config.replace(daq={"write_sync_signals": True}), seed=4)
    return with_timestamps, with_sync


def truth_traces(session) -> list[Traces]:
    """The true dF/F as the extracted activity, so the test is about timing and nothing else."""
    dff = session.load_ground_truth().dff.astype(np.float32)
    n = dff.shape[0]
    masks = [RoiMask(np.array([k % 60]), np.array([k // 60]), np.ones(1)) for k in range(n)]
    return [Traces(F=dff, Fneu=np.zeros_like(dff), spks=dff, roi_masks=masks, roi_index=np.arange(n),
                   cell_probability=np.ones(n), frame_shape=(64, 64), mean_image=np.zeros((64, 64)),
                   max_projection=None, frame_rate=30.0)]


def test_sync_session_has_a_daq_file_and_no_timestamp_files(sessions):
    with_timestamps, with_sync = sessions
    timing = sorted(p.name for p in (with_sync.path / "timing").iterdir())
    assert timing == ["daq.h5", "trials.csv"]
    # the wheel encoder in daq.h5 gives running; the speed it encodes is kept as truth, not read
    assert not (with_sync.path / "behaviour/running.csv").exists()
    assert (with_sync.path / "ground_truth/running.csv").read_bytes() == (with_timestamps.path / "behaviour/running.csv").read_bytes()
    manifest = load_manifest(with_sync.manifest)
    assert manifest.imaging_frame_times is None and manifest.stimulus_frame_times is None
    assert manifest.sync.file.name == "daq.h5" and manifest.sync.photodiode == "photodiode"
    # the DAQ option consumes its own random stream: everything else is the same session
    for a, b in zip(with_timestamps.raw_files, with_sync.raw_files):
        assert a.read_bytes() == b.read_bytes()
    np.testing.assert_array_equal(np.load(with_timestamps.path / "timing/stimulus_frame_times.npy"),
                                  np.load(with_sync.path / "ground_truth/stimulus_frame_times.npy"))


def test_recording_from_sync_signals_equals_the_timestamp_recording(sessions):
    with_timestamps, with_sync = sessions
    traces = truth_traces(with_timestamps)
    expected = recording_from_manifest(load_manifest(with_timestamps.manifest), traces)
    got = recording_from_manifest(load_manifest(with_sync.manifest), traces)
    assert len(got) == len(expected) and list(got.tiers) == list(expected.tiers)
    report = got.extra["sync"]
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a.video, b.video)
        # the times differ by the DAQ's sub-millisecond error only: responses by well under 1% of their range
        np.testing.assert_allclose(b.responses, a.responses, atol=0.01 * float(np.ptp(a.responses)))
    # behaviour can change fast (saccades): within 1% of each channel's session range
    behaviour_a = np.concatenate([t.behavior for t in expected], axis=1)
    behaviour_b = np.concatenate([t.behavior for t in got], axis=1)
    pupil = [got.behavior_channels.index(c) for c in ("pupil", "pupil_x", "pupil_y")]
    scale = np.ptp(behaviour_a[pupil], axis=1, keepdims=True)
    assert (np.abs(behaviour_b[pupil] - behaviour_a[pupil]) <= 0.01 * scale + 1e-6).all()
    # running comes from the DAQ's quadrature wheel here, from running.csv there; the wheel's speed is a
    # straight-line fit over 0.2 s (exact to a count: test_wheel_speed_is_the_fit_of_the_true_position).
    # The file's speed has 0.3 cm/s of white noise per 10 ms sample, which the fit averages away, and run
    # onsets where the acceleration jumps by up to ~60 cm/s^2, which the fit rounds off by up to
    # a x 0.2 s / 8 = 1.5 cm/s: r.m.s. under 0.8 cm/s and no frame 3 cm/s off. A wrong scale (radius for
    # diameter, 4x counts) or a lost start time (0.5 s shift) breaks both.
    running = got.behavior_channels.index("running")
    difference = behaviour_b[running] - behaviour_a[running]
    assert np.ptp(behaviour_a[running]) > 5.0  # the mouse ran
    assert np.sqrt(np.mean(difference**2)) < 0.8 and np.abs(difference).max() < 3.0
    assert report["wheel"]["encoder"] == "quadrature" and report["wheel"]["invalid_transitions"] == 0
    truth = np.load(with_sync.path / "ground_truth/stimulus_frame_times.npy")
    late = np.flatnonzero(np.rint(np.diff(truth) * 60.0) > 2) + 1
    assert [d["frame"] for d in report["stimulus"]["dropped"]] == late.tolist()
    assert "stimulus (vsync+photodiode)" in got.extra["sync_summary"]


def test_wheel_speed_is_the_fit_of_the_true_position(sessions):
    """The decoder loses nothing but the encoder's resolution: its speed at the true imaging times equals
    the same 0.2 s straight-line fit applied to the exact distance run (the integral of the simulated speed)."""
    from scipy.signal import savgol_filter

    from movie_reconstruction.io.behaviour import read_behaviour
    from movie_reconstruction.io.daq import wheel_from_sync
    from movie_reconstruction.simulate.daq import wheel_position_cm

    _, with_sync = sessions
    manifest = load_manifest(with_sync.manifest)
    imaging = np.load(with_sync.path / "ground_truth/imaging_frame_times.npy")
    wheel = wheel_from_sync(manifest.sync, imaging)
    truth = read_behaviour(with_sync.path / "ground_truth/running.csv")
    grid = np.arange(imaging[0] - 1.0, imaging[-1] + 1.0, 1e-3)
    position = wheel_position_cm(grid, truth.times, truth.channels["running"])
    expected = np.interp(imaging, grid, savgol_filter(position, 201, 1, deriv=1, delta=1e-3))
    # one count is pi x 20 cm / 4096 = 0.015 cm; the fit over 0.2 s turns that into well under 0.1 cm/s
    assert np.abs(wheel.speed_cm_s - expected).max() < 0.1
    ends = wheel_position_cm(wheel.position_times[[0, -1]], truth.times, truth.channels["running"])
    assert wheel.report.distance_cm == pytest.approx(ends[1] - ends[0], abs=0.05)  # three counts


def test_sync_section_errors_name_the_manifest(sessions):
    _, with_sync = sessions
    text = with_sync.manifest.read_text()
    broken = with_sync.path / "broken.toml"  # beside the session, so the other paths still resolve
    cases = [
        (text.replace('file = "timing/daq.h5"', 'file = "timing/nope.h5"'), r"broken.toml: DAQ file 'timing/nope.h5' does not exist"),
        (text.replace('file = "timing/daq.h5"', 'file = "../daq.h5"'), r"broken.toml: DAQ file '../daq.h5' lies outside"),
        (text.replace("refresh_hz", "refresh_rate"), r"broken.toml: unknown \[sync\] setting\(s\) \['refresh_rate'\]"),
        (text.replace('frame_clock = "frame_clock"\n', ""), r"broken.toml: \[imaging\] needs 'frame_times'"),
    ]
    try:
        for manifest, message in cases:
            broken.write_text(manifest)
            with pytest.raises(InputError, match=message):
                load_manifest(broken)
    finally:
        broken.unlink()


def test_simulate_command_writes_sync_signals(tmp_path, capsys):
    from movie_reconstruction.simulate.__main__ import main

    assert main([str(tmp_path / "s"), "--preset", "tiny", "--sync-signals", "--seed", "1"]) == 0
    capsys.readouterr()
    manifest = load_manifest(tmp_path / "s" / "session.toml")
    assert manifest.sync is not None and manifest.stimulus_frame_times is None
    assert (tmp_path / "s" / "timing" / "daq.h5").is_file()
