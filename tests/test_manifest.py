"""A whole lab session described by a TOML manifest, turned into an aligned recording."""

import numpy as np
import pytest

from movie_reconstruction import InputError, Traces
from movie_reconstruction.align import recording_from_manifest
from movie_reconstruction.io.manifest import load_manifest
from movie_reconstruction.traces import RoiMask

MANIFEST = """
[session]
name = "mouse1"

[imaging]
raw = ["raw"]
frame_times = "timing/imaging.npy"
plane_offsets = [0.0]

[stimulus]
movie = "stimulus/movie.npy"
frame_times = "timing/stimulus.csv"
trials = "timing/trials.csv"
size = [36, 64]

[behaviour]
files = ["behaviour/wheel.csv", "behaviour/eye.csv"]
[behaviour.columns]
wheel_speed = "running"
"""


def write_session(folder, *, n_movie_frames=240, manifest=MANIFEST):
    for sub in ("raw", "timing", "stimulus", "behaviour"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "raw" / "file_00001.tif").write_bytes(b"")  # the manifest only needs it to exist
    np.save(folder / "timing" / "imaging.npy", np.arange(0, 10, 1 / 15.0))
    stimulus_times = 0.5 + np.arange(240) / 30.0
    np.savetxt(folder / "timing" / "stimulus.csv", stimulus_times, header="time", comments="")
    (folder / "timing" / "trials.csv").write_text("trial_id,start_frame,n_frames,tier\n0,0,100,train\n1,120,100,test\n")
    np.save(folder / "stimulus" / "movie.npy", np.random.default_rng(0).uniform(0, 255, (n_movie_frames, 72, 128)).astype(np.float32))
    t = np.arange(0, 10, 0.01)
    np.savetxt(folder / "behaviour" / "wheel.csv", np.c_[t, np.cos(t)], delimiter=",", header="time,wheel_speed", comments="")
    np.savetxt(folder / "behaviour" / "eye.csv", np.c_[t[::5], t[::5] * 0 + 2, t[::5] * 0, t[::5] * 0 + 1],
               delimiter=",", header="time,pupil,pupil_x,pupil_y", comments="")
    (folder / "session.toml").write_text(manifest)
    return folder / "session.toml"


def fake_traces(n_frames=150, n_cells=4):
    rng = np.random.default_rng(2)
    masks = [RoiMask(np.array([5 + k, 6 + k]), np.array([7, 7]), np.array([1.0, 1.0])) for k in range(n_cells)]
    spks = rng.poisson(1.0, (n_cells, n_frames)).astype(np.float32)
    return Traces(F=spks + 100, Fneu=np.full_like(spks, 50), spks=spks, roi_masks=masks, roi_index=np.arange(n_cells),
                  cell_probability=np.ones(n_cells), frame_shape=(30, 40), mean_image=np.zeros((30, 40)),
                  max_projection=None, frame_rate=15.0)


def test_manifest_to_recording(tmp_path):
    manifest = load_manifest(write_session(tmp_path))
    assert manifest.name == "mouse1" and manifest.raw[0].name == "raw"
    recording = recording_from_manifest(manifest, [fake_traces()])
    assert len(recording) == 2 and list(recording.tiers) == ["train", "test"]
    trial = recording.trial(1)
    assert trial.video.shape == (100, 36, 64) and trial.responses.shape == (4, 100)
    assert recording.extra["missing_behaviour"] == []
    np.testing.assert_allclose(trial.channel("pupil_y"), 1.0)
    np.testing.assert_allclose(recording.neurons.positions[1], [6.5, 7.0])
    # loading the manifest from its folder works too
    assert load_manifest(tmp_path).path.name == "session.toml"


def test_traces_and_timestamps_of_different_lengths(tmp_path):
    manifest = load_manifest(write_session(tmp_path))
    with pytest.raises(InputError, match=r"imaging.npy: plane 0 traces have 140 frames but imaging.npy has 150 timestamps"):
        recording_from_manifest(manifest, [fake_traces(n_frames=140)])


def test_stimulus_movie_shorter_than_timestamps(tmp_path):
    manifest = load_manifest(write_session(tmp_path, n_movie_frames=200))
    with pytest.raises(InputError, match=r"movie.npy: the stimulus movie has 200 frames but stimulus.csv has 240 timestamps"):
        recording_from_manifest(manifest, [fake_traces()])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.replace('movie = "stimulus/movie.npy"', 'movie = "stimulus/other.mp4"'), "stimulus movie 'stimulus/other.mp4' does not exist"),
        (lambda m: m.replace("[behaviour]", "[behavior_typo]"), r"unknown section\(s\) \['behavior_typo'\]"),
        (lambda m: m.replace('frame_times = "timing/imaging.npy"', ""), r"\[imaging\] needs 'frame_times'"),
        (lambda m: m + "\n[[[", "not valid TOML"),
    ],
)
def test_bad_manifests_are_named(tmp_path, edit, message):
    path = write_session(tmp_path, manifest=edit(MANIFEST))
    with pytest.raises(InputError, match=message) as info:
        load_manifest(path)
    assert "session.toml" in str(info.value)


def test_duplicate_trial_id_in_the_table_is_refused_not_dropped(tmp_path):
    """The issue's case: a copy-edited row reuses id 1, which used to drop a trial without a word."""
    path = write_session(tmp_path)
    (tmp_path / "timing" / "trials.csv").write_text(
        "trial_id,start_frame,n_frames,tier\n0,0,50,train\n1,60,50,train\n1,120,100,test\n"
    )
    with pytest.raises(InputError, match=r"trials.csv: trial id\(s\) 1 appear more than once"):
        recording_from_manifest(load_manifest(path), [fake_traces()])


def test_validation_trial_overlapping_a_training_trial_is_refused(tmp_path):
    path = write_session(tmp_path)
    (tmp_path / "timing" / "trials.csv").write_text(
        "trial_id,start_frame,n_frames,tier\n0,0,100,train\n1,120,100,test\n2,80,30,validation\n"
    )
    with pytest.raises(InputError, match=r"trials.csv: overlapping trials share stimulus frames: trial 0 \(train, "
                                         r"frames 0-99\) and trial 2 \(validation, frames 80-109\)"):
        recording_from_manifest(load_manifest(path), [fake_traces()])


def test_stimulus_movie_longer_than_timestamps(tmp_path):
    manifest = load_manifest(write_session(tmp_path, n_movie_frames=250))
    with pytest.raises(InputError, match=r"movie.npy: the stimulus movie has 250 frames but stimulus.csv has only 240 "
                                         r"timestamps: 10 frames have no timestamp .*allow_unshown_frames = true"):
        recording_from_manifest(manifest, [fake_traces()])
    # a session stopped before the movie ended: allowed when the manifest says so, and counted
    allowed = MANIFEST.replace("size = [36, 64]", "size = [36, 64]\nallow_unshown_frames = true")
    manifest = load_manifest(write_session(tmp_path, n_movie_frames=250, manifest=allowed))
    assert manifest.allow_unshown_frames
    assert recording_from_manifest(manifest, [fake_traces()]).extra["unshown_stimulus_frames"] == 10


def _outside_session(tmp_path, movie_path: str, allow: bool = False):
    """A session whose stimulus movie is named by ``movie_path``; a copy of it lives outside the folder."""
    session = tmp_path / "received" / "session"
    manifest = MANIFEST.replace('movie = "stimulus/movie.npy"', f"movie = {movie_path!r}")
    if allow:
        manifest = manifest.replace('name = "mouse1"', 'name = "mouse1"\nallow_outside_paths = true')
    path = write_session(session, manifest=manifest)
    outside = tmp_path / "elsewhere"
    outside.mkdir(exist_ok=True)
    (session / "stimulus" / "movie.npy").replace(outside / "movie.npy")
    return path, outside / "movie.npy"


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_paths_outside_the_manifest_folder_are_refused(tmp_path, how):
    elsewhere = tmp_path / "elsewhere" / "movie.npy"
    named = {"dotdot": "../../elsewhere/movie.npy", "absolute": str(elsewhere), "symlink": "stimulus/link.npy"}[how]
    path, _ = _outside_session(tmp_path, named)
    if how == "symlink":
        (path.parent / "stimulus" / "link.npy").symlink_to(elsewhere)
    with pytest.raises(InputError, match=r"session.toml: stimulus movie '.*' lies outside the manifest's folder .*"
                                         r"allow_outside_paths = true in \[session\]"):
        load_manifest(path)


def test_allowed_outside_paths_are_read_and_recorded_in_the_provenance(tmp_path):
    from movie_reconstruction.pipeline import build_stage
    from movie_reconstruction.progress import run
    from movie_reconstruction.results import ResultsFolder

    path, elsewhere = _outside_session(tmp_path, "../../elsewhere/movie.npy", allow=True)
    manifest = load_manifest(path)
    assert manifest.stimulus_movie == elsewhere.resolve() and manifest.outside_paths == [elsewhere.resolve()]
    results = ResultsFolder.create(tmp_path / "results")
    run(build_stage(results, path, traces=[fake_traces()]))
    stage = results.provenance()["stages"]["build"]
    assert stage["paths_outside_manifest_folder"] == [str(elsewhere.resolve())]
    # inside paths are not listed
    inside = load_manifest(write_session(tmp_path / "plain"))
    assert inside.outside_paths == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("allow_outside_paths = true\n" + MANIFEST, r"key\(s\) \['allow_outside_paths'\] stand outside any section"),
        (MANIFEST.replace('name = "mouse1"', 'name = "mouse1"\nallow_outside_paths = "yes"'),
         r"\[session\] allow_outside_paths must be true or false, got 'yes'"),
    ],
)
def test_allow_outside_paths_must_be_a_boolean_in_session(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        load_manifest(write_session(tmp_path, manifest=text))
