"""Running speed from a DAQ's wheel encoder: quadrature lines and an analogue absolute encoder, with
a known speed profile (forwards, then backwards), glitches, wraps and noise; the manifest's wheel
keys; a simulated session whose running channel comes from its wheel."""

import numpy as np
import pytest

from movie_reconstruction import InputError
from movie_reconstruction.align import recording_from_manifest
from movie_reconstruction.io.manifest import load_manifest
from movie_reconstruction.simulate import SimulationConfig, simulate_session
from movie_reconstruction.sync_wheel import decode_analog, decode_quadrature
from test_sync_session import truth_traces

RATE = 10_000.0
DIAMETER_CM = 20.0
COUNTS_PER_REV = 4096
CM_PER_COUNT = np.pi * DIAMETER_CM / COUNTS_PER_REV  # 0.0153 cm
# speed (cm/s) at these times, linear between: rest, run forwards at 30 cm/s, turn, back at 15 cm/s, rest
KNOTS_S = [0.0, 2.0, 5.0, 9.0, 11.0, 14.0, 16.0, 20.0]
KNOTS_CM_S = [0.0, 0.0, 30.0, 30.0, -15.0, -15.0, 0.0, 0.0]
TRUE_DISTANCE_CM = 45.0 + 120.0 + 15.0 - 45.0 - 15.0  # the areas of the segments: 120 cm net
FRAMES = 0.05 + np.arange(590) / 30.0  # imaging frames at 30 Hz


def profile():
    t = np.arange(int(KNOTS_S[-1] * RATE)) / RATE
    speed = np.interp(t, KNOTS_S, KNOTS_CM_S)
    position = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) / RATE)])
    return t, position


def quadrature(position_cm):
    """Square waves written here from the definition, not with the simulator: A's cycle is 4 counts,
    B lags A by a quarter cycle when the wheel turns forwards."""
    cycles = position_cm / CM_PER_COUNT / 4.0
    return ((cycles % 1.0) < 0.5).astype(np.uint8), (((cycles - 0.25) % 1.0) < 0.5).astype(np.uint8)


def away_from_kinks(frames, half_window_s=0.1):
    """Frames where the smoothing window holds no corner of the profile (there a straight-line fit is exact)."""
    return np.min(np.abs(frames[:, None] - np.asarray(KNOTS_S)[None, :]), axis=1) > half_window_s + 0.01


def test_quadrature_forwards_and_backwards_with_glitches_on_one_line():
    t, position = profile()
    a, b = quadrature(position)
    clean = decode_quadrature(a, b, RATE, counts_per_rev=COUNTS_PER_REV, diameter_cm=DIAMETER_CM, frame_times=FRAMES)
    # glitches on line A only: at rest, and while running where B does not change during them
    glitched = a.copy()
    for time_s, length in [(1.0, 3), (17.5, 1), (6.5, 2), (12.3, 2)]:
        start = int(time_s * RATE)
        while not (b[start - 1 : start + length + 1] == b[start]).all():
            start += 1
        glitched[start : start + length] ^= 1
    result = decode_quadrature(glitched, b, RATE, counts_per_rev=COUNTS_PER_REV, diameter_cm=DIAMETER_CM,
                               frame_times=FRAMES)
    report = result.report
    assert report.counts == clean.report.counts  # each glitch is -1 then +1 (or +1 then -1)
    assert report.transitions == clean.report.transitions + 8 and report.invalid_transitions == 0
    # the count is floor(position / count), so the net distance is within one count of the truth
    assert abs(report.distance_cm - TRUE_DISTANCE_CM) <= CM_PER_COUNT
    assert report.direction == "both" and report.backwards_cm == pytest.approx(65.0, abs=0.5)  # 45 + 15 + 5 (after 10.33 s)
    truth = np.interp(FRAMES, KNOTS_S, KNOTS_CM_S)
    smooth = away_from_kinks(FRAMES)
    # a count is 0.015 cm: over the 0.2 s window that is < 0.1 cm/s; 0.15 cm/s leaves room, and a wrong
    # scale (radius for diameter), sign or counts per cycle would be off by 15 cm/s or more
    assert np.abs(result.speed_cm_s[smooth] - truth[smooth]).max() < 0.15
    # at the corners the 0.2 s fit rounds them off: by at most acceleration x window / 8 = 0.6 cm/s here
    assert np.abs(result.speed_cm_s - truth).max() < 0.6
    assert result.speed_cm_s[(FRAMES > 11.5) & (FRAMES < 13.5)].max() < -14.5  # running backwards is negative
    assert report.max_speed_cm_s == pytest.approx(30.0, abs=0.15)


def test_a_glitch_across_the_other_lines_edge_loses_a_cycle_unless_debounced():
    _, position = profile()
    a, b = quadrature(position)
    edge = np.flatnonzero((np.diff(b.astype(int)) != 0) & (np.arange(b.size - 1) > 6.5 * RATE))[0] + 1
    a[edge - 1 : edge + 1] ^= 1  # two samples on A across an edge of B
    kwargs = dict(counts_per_rev=COUNTS_PER_REV, diameter_cm=DIAMETER_CM, frame_times=FRAMES)
    plain = decode_quadrature(a, b, RATE, **kwargs).report
    assert abs(plain.distance_cm - TRUE_DISTANCE_CM) == pytest.approx(4 * CM_PER_COUNT, abs=CM_PER_COUNT)
    # at 30 cm/s the real pulses last 10 samples: a 0.3 ms debounce removes the 2-sample glitch only
    debounced = decode_quadrature(a, b, RATE, debounce_s=3e-4, **kwargs).report
    assert debounced.glitches_removed == 1
    assert abs(debounced.distance_cm - TRUE_DISTANCE_CM) <= CM_PER_COUNT


def test_analog_encoder_with_wraps_noise_and_spikes():
    t, position = profile()
    rng = np.random.default_rng(3)
    circumference = np.pi * DIAMETER_CM
    volts = np.mod(position / circumference, 1.0) * 5.0 + rng.normal(0.0, 0.02, t.size)  # 0.02 V: 0.25 cm
    spikes = rng.choice(t.size, 20, replace=False)
    volts[spikes] = rng.uniform(0.0, 5.0, 20)  # one-sample spikes anywhere in the range
    result = decode_analog(volts, RATE, max_volts=5.0, diameter_cm=DIAMETER_CM, frame_times=FRAMES, start_time=0.0)
    report = result.report
    # the wheel crosses the wrap at 1 and 2 revolutions forwards, then 2 again backwards: net 120 cm
    assert report.revolutions == pytest.approx(TRUE_DISTANCE_CM / circumference, abs=0.01)
    assert report.wraps >= 3 and (report.wraps - 3) % 2 == 0  # extra wraps (spikes, noise at the wrap) come in pairs
    # noise of 0.25 cm per sample, averaged over 10 samples per 1 ms bin: under 0.1 cm at either end
    assert abs(report.distance_cm - TRUE_DISTANCE_CM) < 0.3
    truth = np.interp(FRAMES, KNOTS_S, KNOTS_CM_S)
    smooth = away_from_kinks(FRAMES)
    # the fit over 200 bins leaves ~0.1 cm/s of noise (s.d.); the worst of ~500 frames stays under 0.5,
    # a spike moves the fit by ~0.2 cm/s at most
    assert np.abs(result.speed_cm_s[smooth] - truth[smooth]).max() < 0.5
    assert np.abs(result.speed_cm_s - truth).max() < 1.0


def test_bad_wheel_signals_are_one_line_errors():
    _, position = profile()
    a, b = quadrature(position)
    with pytest.raises(InputError, match="wheel line B is flat"):
        decode_quadrature(a, np.zeros_like(b), RATE, counts_per_rev=4096, diameter_cm=20.0, frame_times=FRAMES)
    with pytest.raises(InputError, match="above wheel_analog_max_volts = 5"):
        decode_analog(np.mod(position, 10.0), RATE, max_volts=5.0, diameter_cm=20.0, frame_times=FRAMES)
    with pytest.raises(InputError, match="diameter must be positive"):
        decode_quadrature(a, b, RATE, counts_per_rev=4096, diameter_cm=0.0, frame_times=FRAMES)


# ------------------------------------------------------------------------ through the manifest
@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel_sessions")
    config = SimulationConfig.tiny().replace(daq={"write_sync_signals": True, "wheel_encoder": "analog"})
    return simulate_session(root / "analog", config, seed=6)


def test_analog_wheel_session_gets_its_running_channel_from_the_daq(sessions):
    manifest = load_manifest(sessions.manifest)
    assert manifest.sync.wheel_analog == "wheel_analog" and [p.name for p in manifest.behaviour_files] == ["pupil.csv"]
    recording = recording_from_manifest(manifest, truth_traces(sessions))
    running = np.concatenate([t.channel("running") for t in recording])
    truth = truth_running(sessions, recording)
    assert np.ptp(truth) > 5.0  # the mouse ran: the comparison means something
    # as in test_sync_session: the 0.2 s fit averages away the simulated speed's 0.3 cm/s sample noise and
    # rounds off run onsets by up to 1.5 cm/s; the encoder's 0.01 V noise adds ~0.05 cm/s
    assert np.sqrt(np.mean((running - truth) ** 2)) < 0.8
    assert np.abs(running - truth).max() < 3.0
    wheel = recording.extra["sync"]["wheel"]
    assert wheel["encoder"] == "analog" and wheel["direction"] == "forwards" and wheel["distance_cm"] > 0
    assert "wheel (analog)" in recording.extra["sync_summary"] and "wheel (analog)" in recording.extra["sync_line"]


def truth_running(session, recording):
    """The simulated speed (ground_truth/running.csv) at the trial frames' midpoints, as a behaviour file is read."""
    from movie_reconstruction.align import frame_intervals, interpolate_at
    from movie_reconstruction.io.behaviour import read_behaviour

    table = read_behaviour(session.path / "ground_truth" / "running.csv")
    times = np.load(session.path / "ground_truth" / "stimulus_frame_times.npy")
    starts, ends = frame_intervals(times)
    trials = np.loadtxt(session.path / "timing" / "trials.csv", delimiter=",", skiprows=1, usecols=(1, 2)).astype(int)
    frames = np.concatenate([np.arange(s, s + n) for s, n in np.atleast_2d(trials)])
    return interpolate_at(table.channels["running"][None, :], table.times, (starts[frames] + ends[frames]) / 2)[0]


def test_a_running_file_and_a_wheel_are_refused_naming_the_file(sessions):
    text = sessions.manifest.read_text()
    broken = sessions.path / "both.toml"
    broken.write_text(text.replace('files = ["behaviour/pupil.csv"]', 'files = ["behaviour/pupil.csv", "ground_truth/running.csv"]'))
    try:
        with pytest.raises(InputError, match=r"running.csv: gives a 'running' channel and the manifest's \[sync\] wheel"):
            recording_from_manifest(load_manifest(broken), truth_traces(sessions))
    finally:
        broken.unlink()


@pytest.mark.parametrize("edit, message", [
    (('wheel_analog_max_volts = 5.0\n', ''), r"the wheel needs \['wheel_analog_max_volts'\]"),
    (('wheel_analog = "wheel_analog"\n', 'wheel_analog = "wheel_analog"\nwheel_a = "x"\n'), "keep one"),
    (('wheel_analog = "wheel_analog"\n', 'wheel_a = "wheel_analog"\n'), "needs both wheel_a and wheel_b"),
    (('wheel_diameter_cm = 20.0', 'wheel_diameter_cm = -2'), "wheel_diameter_cm must be a positive number"),
    (('wheel_analog = "wheel_analog"\nwheel_analog_max_volts = 5.0\n', ''), r"gives \['wheel_diameter_cm'\] but no wheel line"),
])
def test_wheel_keys_are_checked_when_the_manifest_loads(sessions, edit, message):
    text = sessions.manifest.read_text()
    assert edit[0] in text
    broken = sessions.path / "broken.toml"
    broken.write_text(text.replace(*edit))
    try:
        with pytest.raises(InputError, match="broken.toml: .*" + message):
            load_manifest(broken)
    finally:
        broken.unlink()
