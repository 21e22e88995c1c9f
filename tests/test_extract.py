"""extract_traces: a full suite2p run, progress, cancellation/resume, the raw input left alone,
and the acceptance checks on real recordings in ../shared/data/twop."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from movie_reconstruction.errors import InputError
from movie_reconstruction.extract import RUN_MARKER, STAGING_FOLDER, extract_traces, small_fov_overrides
from movie_reconstruction.io.suite2p_folder import read_suite2p_folder
from movie_reconstruction.progress import run

STAGES = ["registration", "detection", "extraction", "deconvolution", "classification"]
FS = 10.0
SMALL = small_fov_overrides(diameter=6)  # the synthetic frames are 40x48 px with ~5-px cells


def synthetic_stack(n_frames=500, shape=(40, 48), seed=0):
    """Six Gaussian cells with sparse calcium transients on a textured background, Poisson noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    centres = np.array([(10, 10), (10, 36), (26, 14), (29, 38), (19, 25), (32, 6)], float)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    footprints = np.exp(
        -((yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2) / (2 * 2.0**2)
    )
    spikes = rng.random((len(centres), n_frames)) < 0.03
    kernel = np.exp(-np.arange(40) / FS)
    calcium = np.stack([np.convolve(s.astype(float), kernel)[:n_frames] for s in spikes])
    texture = gaussian_filter(rng.standard_normal(shape), 1.5)
    background = 300 + 60 * np.clip(texture / texture.std(), -3, 3) + 150 * footprints.sum(0)
    movie = background[None] + 400 * np.einsum("nt,nyx->tyx", calcium, footprints)
    return rng.poisson(movie).astype(np.int16), centres, calcium


def digest(array_or_path) -> str:
    if isinstance(array_or_path, np.ndarray):
        return hashlib.sha256(array_or_path.tobytes()).hexdigest()
    return hashlib.sha256(open(array_or_path, "rb").read()).hexdigest()


def collect(job):
    events = []
    result = run(job, events.append)
    return result, events


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_stack()


@pytest.fixture(scope="module")
def finished_run(synthetic, tmp_path_factory):
    movie, centres, calcium = synthetic
    before = digest(movie)
    out = tmp_path_factory.mktemp("extract")
    result, events = collect(extract_traces(movie, out, fs=FS, diameter=6, cell_threshold=0.0, settings=SMALL))
    assert digest(movie) == before, "extract_traces modified the input array"
    return out, result, events


def test_full_run_finds_the_planted_cells(synthetic, finished_run):
    movie, centres, calcium = synthetic
    out, result, events = finished_run
    assert len(result) == 1
    traces = result[0]
    assert traces.frame_shape == movie.shape[1:] and traces.n_frames == movie.shape[0]
    assert traces.frame_rate == FS and traces.plane == 0 and traces.plane_offset == 0.0
    assert traces.mean_image.shape == movie.shape[1:] and traces.max_projection.shape == movie.shape[1:]
    assert traces.settings["fs"] == FS and traces.settings["torch_device"] == "cpu"

    distance = np.linalg.norm(centres[:, None] - traces.centroids[None], axis=-1)
    found = distance.min(axis=1) <= 2.0
    assert found.sum() >= 5, f"planted cells found: {found}, centroids {traces.centroids}"
    corrected = traces.corrected(0.7)
    for cell in np.flatnonzero(found):
        roi = distance[cell].argmin()
        assert np.corrcoef(corrected[roi], calcium[cell])[0, 1] > 0.9
        assert np.corrcoef(traces.spks[roi], calcium[cell])[0, 1] > 0.2  # OASIS events follow the transients
    labels = traces.labels()
    assert labels.shape == movie.shape[1:] and set(np.unique(labels)) == set(range(traces.n_cells + 1))


def test_progress_reports_each_suite2p_stage_in_order(finished_run):
    _, _, events = finished_run
    stages = [e.stage for e in events]
    assert stages[0] == "settings" or stages[0] == "conversion"
    first = [stages.index(s) for s in STAGES]
    assert first == sorted(first), stages
    conversion = [e for e in events if e.stage == "conversion"]
    assert conversion[-1].step == conversion[-1].total == 500
    assert stages[-1] == "done"


def test_frames_smaller_than_nonrigid_blocks_fall_back_to_rigid_and_say_so(synthetic, tmp_path):
    movie, _, _ = synthetic
    job = extract_traces(movie, tmp_path, fs=FS)
    first = next(job)
    job.close()
    assert first.stage == "settings" and "rigid registration" in first.message
    assert not (tmp_path / "suite2p").exists()
    with pytest.raises(InputError, match="at least 2 blocks"):
        extract_traces(movie, tmp_path, fs=FS, nonrigid=True)


def test_output_folder_is_complete_and_reads_back_identically(finished_run):
    out, result, _ = finished_run
    plane = out / "suite2p" / "plane0"
    # suite2p's own binary lives in the output folder, next to its results
    assert (plane / "data.bin").stat().st_size == 500 * 40 * 48 * 2
    for name in ("F.npy", "Fneu.npy", "spks.npy", "stat.npy", "iscell.npy", "ops.npy", "settings.npy", "db.npy"):
        assert (plane / name).is_file(), name
    assert not (out / STAGING_FOLDER).exists()
    marker = json.loads((out / "suite2p" / RUN_MARKER).read_text())
    assert marker["complete"] is True
    db = np.load(plane / "db.npy", allow_pickle=True).item()
    assert db["reg_file"] == str(plane / "data.bin")  # paths point at the final place, not the staging one

    (again,) = read_suite2p_folder(out, cell_threshold=0.0)
    np.testing.assert_array_equal(again.F, result[0].F)
    np.testing.assert_array_equal(again.spks, result[0].spks)
    np.testing.assert_array_equal(again.roi_index, result[0].roi_index)


def test_rerun_reuses_a_finished_run_and_refuses_a_different_one(synthetic, finished_run):
    movie, _, _ = synthetic
    out, result, _ = finished_run
    marker_before = (out / "suite2p" / RUN_MARKER).read_text()
    again, events = collect(extract_traces(movie, out, fs=FS, diameter=6, cell_threshold=0.0, settings=SMALL))
    assert [e.stage for e in events] == ["reuse"]
    np.testing.assert_array_equal(again[0].F, result[0].F)

    with pytest.raises(InputError, match="different run"):
        extract_traces(movie, out, fs=FS, diameter=6, tau=0.7)
    with pytest.raises(InputError, match="different run"):
        extract_traces(movie[:-10], out, fs=FS, diameter=6)
    assert (out / "suite2p" / RUN_MARKER).read_text() == marker_before


def test_cancel_between_stages_leaves_no_corrupt_folder_and_resumes(synthetic, finished_run, tmp_path):
    movie, _, _ = synthetic
    _, reference, _ = finished_run
    job = extract_traces(movie, tmp_path, fs=FS, diameter=6, cell_threshold=0.0, settings=SMALL)
    for event in job:
        if event.stage == "detection":
            break
    job.close()

    assert not (tmp_path / "suite2p").exists(), "a cancelled run must not publish a suite2p folder"
    marker = json.loads((tmp_path / STAGING_FOLDER / "suite2p" / RUN_MARKER).read_text())
    assert marker["complete"] is False and marker["stages"]["conversion"] is True
    assert "registration" in marker["stages"]["planes"]["plane0"]
    with pytest.raises(InputError):
        read_suite2p_folder(tmp_path)

    resumed, events = collect(extract_traces(movie, tmp_path, fs=FS, diameter=6, cell_threshold=0.0, settings=SMALL))
    stages = [e.stage for e in events]
    assert "resume" in stages and "conversion" not in stages and "registration" not in stages
    np.testing.assert_allclose(resumed[0].F, reference[0].F, rtol=1e-5)
    assert not (tmp_path / STAGING_FOLDER).exists()


def test_unfinished_run_of_other_settings_is_discarded_not_mixed(synthetic, tmp_path):
    movie, _, _ = synthetic
    job = extract_traces(movie, tmp_path, fs=FS, diameter=6)
    next(job)
    next(job)  # into the conversion
    job.close()
    assert (tmp_path / STAGING_FOLDER).exists()
    # files of the unfinished run, which must not reach the new run's output
    staged = tmp_path / STAGING_FOLDER / "suite2p"
    (staged / "plane0").mkdir(parents=True, exist_ok=True)
    (staged / "plane0" / "left_by_the_old_run.npy").write_bytes(b"old")
    (staged / "left_by_the_old_run.txt").write_text("old")

    result, events = collect(extract_traces(movie[:200], tmp_path, fs=FS, diameter=6, cell_threshold=0.0, settings=SMALL))
    assert any(e.stage == "resume" and "discarding" in e.message for e in events)
    assert not any(e.stage == "resume" and "resuming" in e.message for e in events)
    assert "conversion" in [e.stage for e in events]  # converted its own input again, nothing reused
    final = tmp_path / "suite2p"
    assert not list(final.rglob("left_by_the_old_run*")), "files of the discarded run reached the new output"
    assert not (tmp_path / STAGING_FOLDER).exists()
    # everything published is the new run's: 200 frames in the traces, the registered binary and the settings
    (traces,) = result
    assert traces.n_frames == 200 and traces.F.shape[1] == 200
    assert (final / "plane0" / "data.bin").stat().st_size == 200 * movie.shape[1] * movie.shape[2] * 2  # int16
    marker = json.loads((final / RUN_MARKER).read_text())
    assert marker["complete"] is True
    reread = read_suite2p_folder(tmp_path, cell_threshold=0.0)
    np.testing.assert_array_equal(reread[0].F, traces.F)


def test_every_file_of_a_real_suite2p_run_loads_without_general_unpickling(finished_run):
    """The data-only unpickler reads all that suite2p writes, identical to np.load(allow_pickle=True)."""
    from test_safe_npy import assert_same

    from movie_reconstruction.io.safe_npy import load_objects

    out, _, _ = finished_run
    files = sorted((out / "suite2p").rglob("*.npy"))
    assert {"stat.npy", "ops.npy", "db.npy", "settings.npy", "reg_outputs.npy", "iscell.npy"} <= {f.name for f in files}
    for path in files:
        assert_same(load_objects(path), np.load(path, allow_pickle=True), path.name)


def test_resuming_a_received_partial_folder_never_unpickles_code(synthetic, tmp_path):
    """A .suite2p.partial folder is resumed from its db.npy: a poisoned one is refused, not run."""
    from test_safe_npy import RunsOnLoad

    movie, _, _ = synthetic
    job = extract_traces(movie, tmp_path, fs=FS, diameter=6, do_registration=False, settings=SMALL)
    for event in job:
        if event.stage == "detection":
            break
    job.close()
    plane_db = tmp_path / STAGING_FOLDER / "suite2p" / "plane0" / "db.npy"
    record = np.load(plane_db, allow_pickle=True).item()
    marker = tmp_path / "ran"
    record["hook"] = RunsOnLoad(os.system, f"touch '{marker}'")
    np.save(plane_db, np.array(record, dtype=object), allow_pickle=True)

    with pytest.raises(InputError, match=r"plane0/db\.npy: refused: it holds a pickled reference to posix\.system"):
        run(extract_traces(movie, tmp_path, fs=FS, diameter=6, do_registration=False, settings=SMALL))
    assert not marker.exists()


def test_moving_a_finished_run_into_place_never_unpickles_code(tmp_path):
    from test_safe_npy import RunsOnLoad

    from movie_reconstruction.extract.run_folder import relocate_paths

    marker = tmp_path / "ran"
    folder = tmp_path / "staging"
    folder.mkdir()
    np.save(folder / "ops.npy", np.array({"save_path": str(folder), "x": RunsOnLoad(os.system, f"touch '{marker}'")}), allow_pickle=True)
    with pytest.raises(InputError, match=r"ops\.npy: refused"):
        relocate_paths(folder, folder, tmp_path / "final")
    assert not marker.exists()


def test_multiplane_tiff_file_input_is_never_written(tmp_path):
    import tifffile

    movie, _, _ = synthetic_stack(n_frames=300, shape=(32, 36), seed=1)
    other, _, _ = synthetic_stack(n_frames=300, shape=(32, 36), seed=2)
    interleaved = np.stack([movie, other], axis=1).reshape(600, 32, 36)  # plane 0, plane 1, plane 0, ...
    raw = tmp_path / "raw" / "stack.tif"
    raw.parent.mkdir()
    tifffile.imwrite(raw, interleaved)
    raw.chmod(0o444)
    before, mtime = digest(raw), raw.stat().st_mtime_ns

    out = tmp_path / "out"
    planes = run(extract_traces(raw, out, fs=FS, nplanes=2, diameter=6, do_registration=False, cell_threshold=0.0, settings=SMALL))
    assert digest(raw) == before and raw.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in raw.parent.iterdir()) == ["stack.tif"], "nothing may be written beside the raw input"
    assert [t.plane for t in planes] == [0, 1]
    np.testing.assert_allclose([t.plane_offset for t in planes], [0.0, 1 / (2 * FS)])
    for plane, data in enumerate((movie, other)):
        binary = np.fromfile(out / "suite2p" / f"plane{plane}" / "data.bin", np.int16).reshape(data.shape)
        np.testing.assert_array_equal(binary, data)  # do_registration=False: the binary is the plane's raw frames
        np.testing.assert_allclose(planes[plane].mean_image, data.mean(0), rtol=1e-4)


def test_bad_input_fails_before_the_job_starts(synthetic, tmp_path):
    movie, _, _ = synthetic
    with pytest.raises(InputError, match="frame rate"):
        extract_traces(movie, tmp_path)
    with pytest.raises(InputError, match="unknown suite2p setting"):
        extract_traces(movie, tmp_path, fs=FS, settings={"registration": {"nonrigd": False}})
    with pytest.raises(InputError, match="not found"):
        extract_traces(tmp_path / "missing.tif", tmp_path, fs=FS)
    with pytest.raises(InputError, match=r"\(frames, height, width\)"):
        extract_traces(movie[0], tmp_path, fs=FS)
    with pytest.raises(InputError, match="plane"):
        extract_traces(movie[:499], tmp_path, fs=FS, nplanes=2)
    foreign = tmp_path / "suite2p"
    foreign.mkdir()
    with pytest.raises(InputError, match="did not write"):
        extract_traces(movie, tmp_path, fs=FS)
    assert not any(tmp_path.glob("**/*.bin"))


# ----------------------------------------------------------------------------------------------
# acceptance on real recordings


def match_reference(traces, footprints, reference_traces, max_distance=3.0):
    """One-to-one matching of reference components to extracted cells.

    A pair is eligible when the cell's centroid lies within ``max_distance`` px of the
    component's footprint peak, or when at least half of the cell's mask weight lies on the
    component's footprint (pixels >= 20% of its peak). Among eligible pairs the assignment
    minimises the total centroid distance. Returns (component, cell, correlation) triples,
    correlation taken between the cell's F - 0.7*Fneu and the reference trace.
    """
    from scipy.optimize import linear_sum_assignment

    peaks = np.array([np.unravel_index(np.argmax(f), f.shape) for f in footprints], float)
    distance = np.linalg.norm(peaks[:, None] - traces.centroids[None], axis=-1)
    overlap = np.zeros_like(distance)
    for j, mask in enumerate(traces.roi_masks):
        weights = mask.weights / mask.weights.sum()
        for k, footprint in enumerate(footprints):
            overlap[k, j] = weights[footprint[mask.ypix, mask.xpix] >= 0.2 * footprint.max()].sum()
    eligible = (distance <= max_distance) | (overlap >= 0.5)
    cost = np.where(eligible, distance, 1e6)
    rows, cols = linear_sum_assignment(cost)
    corrected = traces.corrected(0.7)
    return [
        (int(k), int(j), float(np.corrcoef(corrected[j], reference_traces[k])[0, 1]))
        for k, j in zip(rows, cols)
        if eligible[k, j]
    ]


def test_real_movie_matches_caiman_reference(shared_data, tmp_path):
    """CaImAn's demo movie (binned to 30x40): >= 12 of 16 components found, mean correlation >= 0.7.

    Settings a small, low-resolution field of view needs (docs/extraction.md): rigid
    registration (suite2p's 128-px non-rigid blocks do not fit a 30x40 frame), cells ~6 px,
    and detection bins of tau*fs = 20 frames (CaImAn's demo uses fr=10 Hz and slow transients).
    """
    movie = shared_data / "twop" / "calcium_imaging.tif"
    reference = np.load(shared_data / "twop" / "caiman_reference.npz")
    before = digest(movie)
    (traces,) = run(extract_traces(movie, tmp_path, fs=10.0, tau=2.0, diameter=6, settings=small_fov_overrides()))
    assert digest(movie) == before
    assert (tmp_path / "suite2p" / "plane0" / "data.bin").is_file()
    assert traces.n_frames == 1000
    # the movie holds the first 1000 of the reference's 2000 frames
    matches = match_reference(traces, reference["footprints_30x40"], reference["traces"][:, : traces.n_frames])
    correlations = [c for _, _, c in matches]
    print(f"matched {len(matches)}/16 of {traces.n_cells} cells, mean correlation {np.mean(correlations):.3f}")
    assert len(matches) >= 12
    assert np.mean(correlations) >= 0.7


def mean_image_sharpness(image, margin=12):
    """Gradient energy of the central crop, normalised by its squared mean brightness."""
    crop = np.asarray(image, float)[margin:-margin, margin:-margin]
    gy, gx = np.gradient(crop)
    return float(np.mean(gy**2 + gx**2) / np.mean(crop) ** 2)


def test_registration_sharpens_the_allen_mean_image(shared_data, tmp_path):
    import h5py

    path = shared_data / "twop" / "allen_registration_test.h5"
    with h5py.File(path, "r") as h5:
        raw = h5["input_frames"][()]
    before = digest(path)
    (traces,) = run(extract_traces(path, tmp_path, fs=30.0, h5_key="input_frames"))
    assert digest(path) == before
    reg = np.load(tmp_path / "suite2p" / "plane0" / "reg_outputs.npy", allow_pickle=True).item()
    assert np.abs(reg["yoff"]).max() > 0 or np.abs(reg["xoff"]).max() > 0
    registered = np.fromfile(tmp_path / "suite2p" / "plane0" / "data.bin", np.int16).reshape(raw.shape)
    sharp_before = mean_image_sharpness(raw.mean(0))
    sharp_after = mean_image_sharpness(registered.mean(0))
    print(f"mean-image sharpness {sharp_before:.5f} -> {sharp_after:.5f} ({sharp_after / sharp_before - 1:+.1%})")
    assert sharp_after > sharp_before
    np.testing.assert_allclose(traces.mean_image, registered.mean(0), rtol=1e-3, atol=1e-2)
