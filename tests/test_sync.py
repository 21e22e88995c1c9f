"""Frame times from synthetic DAQ sync signals with known truth: jitter, noise, drift, glitches,
dropped flips, and imaging frames missing at the end."""

import h5py
import numpy as np
import pytest

from movie_reconstruction import InputError
from movie_reconstruction.io.daq import SyncSpec, read_daq, times_from_sync
from movie_reconstruction.simulate.daq import render_sync_signals
from movie_reconstruction.sync import classify_flips, digital_edges, frame_times_from_signals

REFRESH_HZ = 60.0
TOLERANCE_S = 0.5e-3


def session_truth(seed=1, n_imaging=900, n_stimulus=800, n_dropped=6):
    """Imaging frames at ~30 Hz with jitter; a 30 Hz movie on a 60 Hz monitor with ``n_dropped`` late flips."""
    rng = np.random.default_rng(seed)
    imaging = 0.3 + np.arange(n_imaging) / 30.0 + rng.normal(0, 2e-5, n_imaging)
    refreshes = np.full(n_stimulus, 2)
    late = np.sort(rng.choice(np.arange(5, n_stimulus - 5), n_dropped, replace=False))
    refreshes[late - 1] += rng.integers(1, 3, n_dropped)  # frame late-1 held 1 or 2 refreshes longer
    flips = 1.0 + np.concatenate([[0], np.cumsum(refreshes[:-1])]) / REFRESH_HZ + rng.normal(0, 2e-4, n_stimulus)
    return imaging, flips, late, refreshes[late - 1] - 2, rng


@pytest.mark.parametrize("lines", ["vsync+photodiode", "photodiode"])
def test_times_within_half_a_millisecond_and_every_dropped_flip_reported(lines):
    imaging, flips, late, extra, rng = session_truth()
    signals = render_sync_signals(imaging, flips, rng, photodiode_noise=0.05, photodiode_drift=0.4, drift_period_s=10.0)
    kwargs = {"photodiode": signals.photodiode}
    if lines == "vsync+photodiode":
        kwargs["vsync"] = signals.vsync
    result = frame_times_from_signals(signals.sample_rate, frame_clock=signals.frame_clock, n_imaging_frames=imaging.size,
                                      n_movie_frames=flips.size, stimulus_frame_rate=30.0, start_time=signals.start_time,
                                      **kwargs)
    assert np.abs(result.imaging_times - imaging).max() < TOLERANCE_S
    assert result.stimulus_times.shape == flips.shape
    assert np.abs(result.stimulus_times - flips).max() < TOLERANCE_S
    report = result.report
    assert report.dropped_frames == late.tolist()
    assert [d.extra_refreshes for d in report.stimulus.dropped] == extra.tolist()
    assert not report.stimulus.short and not report.stimulus.irregular
    assert report.imaging.missing_at_end == 0 and report.imaging.frame_rate_hz == pytest.approx(30.0, rel=1e-4)
    summary = report.summary()
    assert f"{late.size} dropped flip(s)" in summary and str(late[0]) in summary
    if lines == "vsync+photodiode":
        assert report.stimulus.display_lag_s == pytest.approx(0.0167, abs=1e-3)


def test_vsync_alone_gives_flip_requests_and_the_dropped_flips():
    imaging, flips, late, _, rng = session_truth(seed=2)
    signals = render_sync_signals(imaging, flips, rng, display_lag_jitter_s=0.0)
    result = frame_times_from_signals(signals.sample_rate, vsync=signals.vsync, start_time=signals.start_time,
                                      refresh_hz=REFRESH_HZ)
    assert result.imaging_times is None
    np.testing.assert_allclose(result.stimulus_times, flips - 0.0167, atol=TOLERANCE_S)
    assert result.report.dropped_frames == late.tolist()


def test_debouncing_removes_glitches_and_contact_bounce():
    fs = 10_000.0
    line = np.zeros(20_000, np.uint8)
    onsets = np.arange(1000, 19_000, 500)
    for k in onsets:
        line[k : k + 20] = 1
    line[[995, 997]] = 1  # bounce just before the first edge: the edge moves to its first transition
    line[7_300] = 1  # a one-sample glitch between pulses
    edges, glitches = digital_edges(line, fs, debounce_s=1e-3)
    assert edges.size == onsets.size and glitches == 1
    assert edges[0] == pytest.approx(994.5 / fs)
    np.testing.assert_allclose(edges[1:], (onsets[1:] - 0.5) / fs)
    without, _ = digital_edges(line, fs, debounce_s=0.0)
    assert without.size == onsets.size + 3  # the test can fail: without debouncing the glitches count


def test_imaging_frames_missing_at_the_end_and_extra_pulses():
    imaging, flips, _, _, rng = session_truth(seed=3, n_dropped=0)
    signals = render_sync_signals(imaging, flips, rng)
    cut = int((imaging[-5] + 0.001 - signals.start_time) * signals.sample_rate)  # the DAQ stops 4 frames early
    result = frame_times_from_signals(signals.sample_rate, frame_clock=signals.frame_clock[:cut],
                                      n_imaging_frames=imaging.size, start_time=signals.start_time)
    assert result.report.imaging.missing_at_end == 4
    assert np.abs(result.imaging_times - imaging).max() < TOLERANCE_S
    assert "4 imaging frame(s) at the end have no clock pulse" in result.report.summary()
    fewer = frame_times_from_signals(signals.sample_rate, frame_clock=signals.frame_clock,
                                     n_imaging_frames=imaging.size - 10, start_time=signals.start_time)
    assert fewer.report.imaging.extra_at_end == 10 and fewer.imaging_times.size == imaging.size - 10


def test_missing_pulses_inside_are_reported_as_gaps():
    imaging, flips, _, _, rng = session_truth(seed=4, n_dropped=0)
    signals = render_sync_signals(np.delete(imaging, [100, 101]), flips, rng)
    result = frame_times_from_signals(signals.sample_rate, frame_clock=signals.frame_clock, start_time=signals.start_time)
    assert [g[0] for g in result.report.imaging.gaps] == [99]
    assert "gap of 100.0 ms after pulse 99" in result.report.summary()


def test_short_and_irregular_flip_intervals():
    flips = np.cumsum(np.r_[0.0, [2 / 60] * 10, 1 / 60, [2 / 60] * 5, 0.042, [2 / 60] * 5])
    report = classify_flips(flips, 60.0)
    assert report.nominal_refreshes == 2 and not report.dropped
    assert [d.frame for d in report.short] == [11] and [i[0] for i in report.irregular] == [17]


def test_more_flips_than_movie_frames_is_an_error():
    imaging, flips, _, _, rng = session_truth(seed=5, n_dropped=0)
    signals = render_sync_signals(imaging, flips, rng)
    with pytest.raises(InputError, match="800 stimulus flips but the movie has only 700 frames"):
        frame_times_from_signals(signals.sample_rate, photodiode=signals.photodiode, n_movie_frames=700)


@pytest.mark.parametrize("form", ["h5", "npz", "bin"])
def test_daq_files_hdf5_npz_and_raw_binary(tmp_path, form):
    imaging, flips, late, _, rng = session_truth(seed=6, n_imaging=300, n_stimulus=250, n_dropped=2)
    signals = render_sync_signals(imaging, flips, rng)
    spec = SyncSpec(file=tmp_path / f"daq.{form}", frame_clock="frame_clock", vsync="vsync", photodiode="photodiode")
    if form == "h5":
        signals.write_hdf5(spec.file)
    elif form == "npz":
        np.savez(spec.file, frame_clock=signals.frame_clock, vsync=signals.vsync, photodiode=signals.photodiode,
                 sample_rate=signals.sample_rate, start_time=signals.start_time)
    else:  # a DAQ writing int16 counts, interleaved
        counts = np.column_stack([signals.frame_clock * 16000.0, signals.photodiode * 8000.0, signals.vsync * 16000.0])
        counts.astype("<i2").tofile(spec.file)
        spec.channels, spec.dtype = ["frame_clock", "photodiode", "vsync"], "<i2"
        spec.sample_rate, spec.start_time = signals.sample_rate, signals.start_time
    result = times_from_sync(spec, n_imaging_frames=300, n_movie_frames=250, stimulus_frame_rate=30.0)
    assert np.abs(result.imaging_times - imaging).max() < TOLERANCE_S
    assert np.abs(result.stimulus_times - flips).max() < TOLERANCE_S
    assert result.report.dropped_frames == late.tolist()


def test_daq_file_errors_name_the_file(tmp_path):
    path = tmp_path / "daq.h5"
    with h5py.File(path, "w") as fh:
        fh["frame_clock"] = np.zeros(10)
    with pytest.raises(InputError, match=r"daq.h5: no dataset 'vsync'; the file has \['frame_clock'\]"):
        read_daq(path, ["vsync"])
    with pytest.raises(InputError, match="daq.h5: no sample rate"):
        read_daq(path, ["frame_clock"])
    raw = tmp_path / "daq.bin"
    np.zeros(7, np.int16).tofile(raw)
    with pytest.raises(InputError, match="daq.bin: file size 14 is not a whole number of 2-channel int16 samples"):
        read_daq(raw, ["a"], sample_rate=1000.0, channels=["a", "b"])
