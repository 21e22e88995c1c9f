"""A simulated session written with raw DAQ sync signals builds the same recording as the one
written with timestamp files (same seed), through the manifest's [sync] section."""

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
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a.video, b.video)
        # the times differ by the DAQ's sub-millisecond error only: responses by well under 1% of their range
        np.testing.assert_allclose(b.responses, a.responses, atol=0.01 * float(np.ptp(a.responses)))
    # behaviour can change fast (saccades, running onsets): within 1% of each channel's session range
    behaviour_a = np.concatenate([t.behavior for t in expected], axis=1)
    behaviour_b = np.concatenate([t.behavior for t in got], axis=1)
    scale = np.ptp(behaviour_a, axis=1, keepdims=True)
    assert (np.abs(behaviour_b - behaviour_a) <= 0.01 * scale + 1e-6).all()
    report = got.extra["sync"]
    truth = np.load(with_sync.path / "ground_truth/stimulus_frame_times.npy")
    late = np.flatnonzero(np.rint(np.diff(truth) * 60.0) > 2) + 1
    assert [d["frame"] for d in report["stimulus"]["dropped"]] == late.tolist()
    assert "stimulus (vsync+photodiode)" in got.extra["sync_summary"]


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
