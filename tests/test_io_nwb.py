"""NWB files built here with pynwb (two layouts) read as the same recording as the simulated
session's TIFF/manifest form."""

import json

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, TimeSeries  # noqa: E402
from pynwb.behavior import BehavioralTimeSeries, EyeTracking, PupilTracking, SpatialSeries  # noqa: E402
from pynwb.epoch import TimeIntervals  # noqa: E402
from pynwb.base import ImageReferences, Images  # noqa: E402
from pynwb.image import GrayscaleImage, IndexSeries, OpticalSeries  # noqa: E402
from pynwb.ophys import Fluorescence, ImageSegmentation, RoiResponseSeries  # noqa: E402
from pynwb.file import Subject  # noqa: E402
from pynwb.testing.mock.file import mock_NWBFile  # noqa: E402
from pynwb.testing.mock.ophys import mock_ImagingPlane, mock_TwoPhotonSeries  # noqa: E402

from movie_reconstruction import InputError, Traces  # noqa: E402
from movie_reconstruction.align import TrialTable, recording_from_manifest  # noqa: E402
from movie_reconstruction.io.behaviour import read_behaviour  # noqa: E402
from movie_reconstruction.io.manifest import load_manifest, read_times  # noqa: E402
from movie_reconstruction.io.nwb import describe_nwb, read_nwb, recording_from_nwb  # noqa: E402
from movie_reconstruction.io.tiff import read_raw_stack  # noqa: E402
from movie_reconstruction.simulate import SimulationConfig, simulate_session  # noqa: E402
from movie_reconstruction.traces import RoiMask  # noqa: E402


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return simulate_session(tmp_path_factory.mktemp("nwb") / "session", SimulationConfig.tiny(), seed=5)


@pytest.fixture(scope="module")
def traces(session):
    """The true dF/F and the true footprints, standing in for an extraction."""
    truth = session.load_ground_truth()
    footprints = truth.footprints.tocsr()
    masks = []
    for k in range(footprints.shape[0]):
        row = footprints[k]
        y, x = np.divmod(row.indices, truth.labels.shape[1])
        masks.append(RoiMask(y.astype(np.int64), x.astype(np.int64), row.data.astype(np.float32)))
    dff = truth.dff.astype(np.float32)
    n = dff.shape[0]
    return [Traces(F=dff + 1, Fneu=dff * 0.5, spks=dff, roi_masks=masks, roi_index=np.arange(n),
                   cell_probability=np.ones(n), frame_shape=truth.labels.shape, mean_image=np.zeros(truth.labels.shape),
                   max_projection=None, frame_rate=30.0)]


def _trials_and_behaviour(nwb, folder, stimulus_times, layout):
    trials = TrialTable.read_csv(folder / "timing/trials.csv")
    nwb.add_trial_column("tier", "train, validation or test")
    for start, n, tier in zip(trials.start_frames, trials.n_frames, trials.tiers):
        nwb.add_trial(start_time=stimulus_times[start], stop_time=stimulus_times[start + n], tier=str(tier))
    running = read_behaviour(folder / "behaviour/running.csv")
    pupil = read_behaviour(folder / "behaviour/pupil.csv")
    behaviour = nwb.create_processing_module("behavior", "running and eye")
    speed = TimeSeries(name="running_speed" if layout == "raw" else "speed", data=running.channels["running"],
                       unit="cm/s", timestamps=running.times)
    if layout == "raw":
        behaviour.add(speed)
    else:
        behaviour.add(BehavioralTimeSeries(name="wheel", time_series=[speed]))
    diameter = TimeSeries(name="pupil_diameter", data=pupil.channels["pupil"], unit="pixels", timestamps=pupil.times)
    behaviour.add(PupilTracking(name="PupilTracking", time_series=[diameter]))
    position = SpatialSeries(name="pupil_position", data=np.c_[pupil.channels["pupil_x"], pupil.channels["pupil_y"]],
                             reference_frame="screen centre", unit="degrees", timestamps=pupil.times)
    behaviour.add(EyeTracking(name="EyeTracking", spatial_series=[position]))


def write_nwb(session, traces, layout, path):
    """``raw``: TwoPhotonSeries + OpticalSeries template + presentation table; ``rois``: PlaneSegmentation
    with Fluorescence/Neuropil/Deconvolved series (and curated-out ROIs) + ImageSeries of unique frames + IndexSeries."""
    folder = session.path
    imaging_times = read_times(folder / "timing/imaging_frame_times.npy")
    stimulus_times = read_times(folder / "timing/stimulus_frame_times.npy")
    movie = np.load(folder / "stimulus/movie.npy")
    nwb = mock_NWBFile(session_id="sim-5", subject=Subject(subject_id="sim-mouse-5", species="Mus musculus", sex="F",
                                                           age="P90D"))
    plane = mock_ImagingPlane(nwbfile=nwb, imaging_rate=30.0)
    if layout == "raw":
        frames = np.asarray(read_raw_stack(session.raw_files).movie(0))
        mock_TwoPhotonSeries(name="TwoPhotonSeries", data=frames, timestamps=imaging_times, rate=None,
                             imaging_plane=plane, nwbfile=nwb)
        template = OpticalSeries(name="natural_movie", data=movie, unit="n.a.", rate=30.0,
                                 distance=0.2, field_of_view=[0.3, 0.5], orientation="lower left")
        nwb.add_stimulus_template(template)
        table = TimeIntervals(name="movie_presentations", description="one row per frame shown")
        table.add_column("frame", "index into natural_movie")
        ends = np.append(stimulus_times[1:], stimulus_times[-1] + 1 / 30)
        for k, (start, stop) in enumerate(zip(stimulus_times, ends)):
            table.add_row(start_time=start, stop_time=stop, frame=k)
        nwb.add_time_intervals(table)
    else:
        _write_rois(nwb, plane, traces[0], imaging_times)
        unique, index = np.unique(movie, axis=0, return_inverse=True)
        images = [GrayscaleImage(name=f"frame_{k:04d}", data=frame) for k, frame in enumerate(unique)]
        template = Images(name="movie_frames", images=images, description="the distinct frames",
                          order_of_images=ImageReferences(name="order_of_images", data=images))
        nwb.add_stimulus_template(template)
        nwb.add_stimulus(IndexSeries(name="movie_index", data=index.ravel().astype(np.uint32), unit="N/A",
                                     indexed_images=template, timestamps=stimulus_times))
    _trials_and_behaviour(nwb, folder, stimulus_times, layout)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _write_rois(nwb, plane, traces, imaging_times):
    ophys = nwb.create_processing_module("ophys", "extracted ROIs")
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    rois = segmentation.create_plane_segmentation(name="PlaneSegmentation", description="cells", imaging_plane=plane)
    rois.add_column("iscell", "curated: 1 is a cell")
    rng = np.random.default_rng(0)
    n = traces.n_cells
    order = []  # the true cells, with two curated-out ROIs between them
    for k, mask in enumerate(traces.roi_masks):
        rois.add_roi(pixel_mask=list(zip(mask.xpix.tolist(), mask.ypix.tolist(), mask.weights.tolist())), iscell=1.0)
        order.append(k)
        if k in (3, 10):
            rois.add_roi(pixel_mask=[(1, 2, 1.0)], iscell=0.0)
            order.append(-1)
    order = np.asarray(order)
    region = rois.create_roi_table_region("all ROIs", region=list(range(len(order))))

    def per_roi(values):  # (cells, frames) -> (frames, ROIs) with noise for the curated-out ones
        out = rng.normal(0, 1, (values.shape[1], len(order))).astype(np.float32)
        out[:, order >= 0] = values.T
        return out

    fluorescence = Fluorescence(name="Fluorescence")
    ophys.add(fluorescence)
    for name, values in (("Fluorescence", traces.F), ("Neuropil", traces.Fneu), ("Deconvolved", traces.spks)):
        fluorescence.add_roi_response_series(RoiResponseSeries(name=name, data=per_roi(values), rois=region,
                                                               unit="a.u.", timestamps=imaging_times))
    assert n == int((order >= 0).sum())


def assert_same_recording(got, expected):
    assert len(got) == len(expected) and list(got.trial_ids) == list(expected.trial_ids)
    assert list(got.tiers) == list(expected.tiers)
    np.testing.assert_allclose(got.neurons.positions, expected.neurons.positions, rtol=1e-6)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(b.video, a.video)
        np.testing.assert_allclose(b.responses, a.responses, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b.behavior, a.behavior, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layout", ["raw", "rois"])
def test_nwb_reads_as_the_manifest_session(session, traces, tmp_path, layout):
    path = write_nwb(session, traces, layout, tmp_path / f"{layout}.nwb")
    source_bytes = path.read_bytes()
    expected = recording_from_manifest(load_manifest(session.manifest), traces)
    nwb_session = read_nwb(path)
    if layout == "raw":
        assert nwb_session.traces == [] and nwb_session.used["raw frames"] == "acquisition/TwoPhotonSeries"
        tiff = np.asarray(read_raw_stack(session.raw_files).movie(0))
        np.testing.assert_array_equal(np.asarray(nwb_session.raw.movie(0)), tiff)
        with pytest.raises(InputError, match=r"raw.nwb: the NWB file has no ROI responses"):
            recording_from_nwb(nwb_session)
        got = recording_from_nwb(nwb_session, traces)
        assert got.extra["nwb_objects"]["stimulus presentation"] == "intervals/movie_presentations"
    else:
        (plane,) = nwb_session.traces
        assert plane.n_cells == traces[0].n_cells  # the curated-out ROIs are dropped
        np.testing.assert_array_equal(plane.Fneu, traces[0].Fneu)
        got = recording_from_nwb(nwb_session)
        assert got.extra["nwb_objects"]["responses plane 0"] == "processing/ophys/Fluorescence/Deconvolved"
        assert got.extra["nwb_objects"]["stimulus frames"] == "movie_frames (Images)"
    assert {"behaviour running", "behaviour pupil", "behaviour pupil_x/pupil_y"} <= set(got.extra["nwb_objects"])
    assert got.extra["missing_behaviour"] == []
    assert_same_recording(got, expected)
    assert path.read_bytes() == source_bytes  # reading never writes


def test_ambiguous_response_lists_what_the_file_holds(session, traces, tmp_path):
    path = write_nwb(session, traces, "rois", tmp_path / "rois.nwb")
    with pytest.raises(InputError, match=r"rois.nwb: no ROI response series called 'spikes'; the file has: "
                                         r"processing/ophys/Fluorescence/Deconvolved \(RoiResponseSeries\); "
                                         r"processing/ophys/Fluorescence/Fluorescence \(RoiResponseSeries\); "):
        read_nwb(path, response="spikes")
    fluorescence = read_nwb(path, response="Fluorescence")
    np.testing.assert_array_equal(fluorescence.traces[0].spks, traces[0].F)
    listing = describe_nwb(path)
    assert "stimulus/presentation/movie_index: IndexSeries" in listing
    assert "processing/behavior/EyeTracking/pupil_position: SpatialSeries" in listing


def test_not_an_nwb_file(tmp_path):
    bad = tmp_path / "bad.nwb"
    bad.write_text("hello")
    with pytest.raises(InputError, match="bad.nwb: not a readable NWB file"):
        read_nwb(bad)


def _results_folder(path, recording, traces):
    """A results folder as the pipeline writes it: two reconstructed trials, a mask, ROIs, metrics, controls."""
    from safetensors.numpy import save_file

    from movie_reconstruction.results import ResultsFolder

    results = ResultsFolder.create(path)
    results.write_rois(traces)
    rng = np.random.default_rng(1)
    rows = []
    for k in (0, len(recording) - 1):
        trial = recording.trial(k)
        reconstruction = np.clip(trial.video + rng.normal(0, 20, trial.video.shape), 0, 255).astype(np.float32)
        results.write_trial(trial_id=trial.trial_id, tier=trial.tier, stimulus=trial.video, reconstruction=reconstruction,
                            member_movies=reconstruction[None], correlation=0.5 + 0.1 * k, ssim=0.3,
                            frame_correlation=np.full(trial.n_frames, 0.5), population_activity=np.ones(trial.n_frames),
                            identity="test", info={})
        rows.append({"trial_id": trial.trial_id, "correlation": 0.5 + 0.1 * k})
    save_file({"alpha": np.linspace(0, 1, 36 * 64, dtype=np.float32).reshape(36, 64)}, str(results.mask_path))
    results.write_metrics(rows, {"mean": 0.55})
    results.write_controls({"rows": [{"control": "model", "correlation": 0.55, "passes": None},
                                     {"control": "shuffled trials", "correlation": 0.01, "passes": True}]})
    return results.path


def test_results_written_as_nwb_on_the_session_clock(session, traces, tmp_path):
    from movie_reconstruction.io.nwb_results import write_results_nwb

    source = write_nwb(session, traces, "rois", tmp_path / "session.nwb")
    source_bytes = source.read_bytes()
    recording = recording_from_nwb(source)
    folder = _results_folder(tmp_path / "results", recording, traces)
    out = write_results_nwb(folder, tmp_path / "results.nwb", source=source)
    assert source.read_bytes() == source_bytes  # the source is never written
    stimulus_times = read_times(session.path / "timing/stimulus_frame_times.npy")
    starts = TrialTable.read_csv(session.path / "timing/trials.csv").start_frames
    with NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        module = nwb.processing["movie_reconstruction"]
        last = recording.trial(len(recording) - 1)
        series = module[f"reconstruction_trial_{last.trial_id}"]
        assert series.data.shape == last.video.shape
        np.testing.assert_array_equal(series.timestamps[:], stimulus_times[starts[-1] : starts[-1] + last.n_frames])
        np.testing.assert_array_equal(nwb.stimulus[f"stimulus_trial_{last.trial_id}"].data[:], last.video)
        metrics = module["metrics"].to_dataframe()
        assert metrics["correlation"].tolist() == pytest.approx([0.5, 0.5 + 0.1 * (len(recording) - 1)])
        assert module["controls"].to_dataframe()["control"].tolist() == ["model", "shuffled trials"]
        masks = module["masks"]
        assert masks["transparency_mask"].data.shape == (36, 64)
        np.testing.assert_array_equal(masks["roi_labels_plane0"].data[:], traces[0].labels())
        notes = json.loads(nwb.notes)
        assert notes["source"] == str(source.resolve()) and len(notes["sha256"]) == 64
    with pytest.raises(InputError, match="would replace its source"):
        write_results_nwb(folder, source, source=source)


def test_results_nwb_passes_nwbinspector(session, traces, tmp_path):
    nwbinspector = pytest.importorskip("nwbinspector")
    from movie_reconstruction.io.nwb_results import write_results_nwb

    serious = {nwbinspector.Importance.ERROR, nwbinspector.Importance.PYNWB_VALIDATION, nwbinspector.Importance.CRITICAL,
               nwbinspector.Importance.BEST_PRACTICE_VIOLATION}

    def problems(path):
        messages = [m for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(path)) if m is not None]
        return [f"{m.importance.name}: {m.location}: {m.message}" for m in messages if m.importance in serious]

    source = write_nwb(session, traces, "rois", tmp_path / "session.nwb")
    folder = _results_folder(tmp_path / "results", recording_from_nwb(source), traces)
    assert problems(write_results_nwb(folder, tmp_path / "from_nwb.nwb", source=source)) == []  # subject copied
    # from a manifest the mouse is unknown: without its age the inspector objects, with it all is well
    unknown = write_results_nwb(folder, tmp_path / "unknown.nwb", source=session.manifest)
    assert [p for p in problems(unknown) if "age" in p]
    given = write_results_nwb(folder, tmp_path / "given.nwb", source=session.manifest,
                              subject={"subject_id": "m12", "species": "Mus musculus", "sex": "M", "age": "P70D"})
    assert problems(given) == []


def test_cli_builds_from_nwb_and_exports_results(session, traces, tmp_path, capsys):
    from movie_reconstruction.cli import EXIT_INPUT, main
    from movie_reconstruction.io.sensorium import read_sensorium
    from movie_reconstruction.results import ResultsFolder

    source = write_nwb(session, traces, "rois", tmp_path / "session.nwb")
    results = tmp_path / "results"
    assert main(["build", str(source), "-o", str(results)]) == 0
    built = read_sensorium(results / "recording")
    expected = recording_from_manifest(load_manifest(session.manifest), traces)
    np.testing.assert_allclose(built.trial(0).responses, expected.trial(0).responses, rtol=1e-6, atol=1e-7)
    stage = ResultsFolder.open(results).provenance()["stages"]["build"]
    assert stage["nwb_objects"]["responses plane 0"] == "processing/ophys/Fluorescence/Deconvolved"
    assert main(["build", str(source), "-o", str(results), "--nwb-response", "nothing"]) == EXIT_INPUT
    assert "no ROI response series called 'nothing'" in capsys.readouterr().err
    raw = write_nwb(session, traces, "raw", tmp_path / "raw.nwb")
    assert main(["build", str(raw), "-o", str(tmp_path / "raw_results")]) == EXIT_INPUT
    assert "holds no ROI responses, only raw frames" in capsys.readouterr().err

    _results_folder(tmp_path / "recon", built, traces)
    assert main(["export-nwb", str(tmp_path / "recon"), str(tmp_path / "recon.nwb"), "--source", str(source)]) == 0
    assert (tmp_path / "recon.nwb").is_file()


def test_napari_reader_opens_nwb_files(session, traces, tmp_path):
    from movie_reconstruction._napari_io import read_nwb_file

    assert read_nwb_file(str(session.manifest)) is None
    rois = read_nwb_file(str(write_nwb(session, traces, "rois", tmp_path / "rois.nwb")))(None)
    names = [kwargs["name"] for _, kwargs, _ in rois]
    assert any("labels" in kind for _, _, kind in rois) and names[-1] == "sim-5 · stimulus"
    stimulus, kwargs, _ = rois[-1]
    first = read_times(session.path / "timing/stimulus_frame_times.npy")[0]
    assert stimulus.shape[1:] == (36, 64) and kwargs["translate"][0] == pytest.approx(first)
    raw = read_nwb_file(str(write_nwb(session, traces, "raw", tmp_path / "raw.nwb")))(None)
    assert [kwargs["name"] for _, kwargs, _ in raw][:2] == ["plane 0 · raw stack", "plane 0 · mean image"]


def test_build_recording_widget_job_reads_nwb(session, traces, tmp_path):
    pytest.importorskip("magicgui")
    from movie_reconstruction._widgets.recording import NWB, build_job
    from movie_reconstruction.progress import run

    source = write_nwb(session, traces, "rois", tmp_path / "rois.nwb")
    recording, new_traces, where = run(build_job(NWB, results_folder=tmp_path / "results", manifest_path=source))
    assert new_traces[0].n_cells == traces[0].n_cells
    assert where == tmp_path / "results" / "recording" and (where / "meta").is_dir()
    assert_same_recording(recording, recording_from_manifest(load_manifest(session.manifest), traces))
    with pytest.raises(InputError, match="choose an NWB file"):
        run(build_job(NWB, results_folder=tmp_path / "other", manifest_path=None))
    assert not (tmp_path / "other").exists()  # nothing written for bad input


def test_session_written_as_nwb_reads_back_the_same(session, traces, tmp_path):
    from movie_reconstruction.io.nwb_session import write_session_nwb

    out = write_session_nwb(session.manifest, tmp_path / "session.nwb", traces)
    nwb_session = read_nwb(out)
    assert nwb_session.used["raw frames"] == "acquisition/TwoPhotonSeries_plane0"
    assert nwb_session.used["responses plane 0"] == "processing/ophys/Fluorescence_plane0/Deconvolved"
    assert_same_recording(recording_from_nwb(nwb_session), recording_from_manifest(load_manifest(session.manifest), traces))
    two_planes = [traces[0], Traces(**{**traces[0].__dict__, "plane": 1, "plane_offset": 0.01})]
    nwb_two = read_nwb(write_session_nwb(session.manifest, tmp_path / "two.nwb", two_planes, raw=False))
    assert len(nwb_two.traces) == 2 and nwb_two.plane_offsets == pytest.approx([0.0, 0.01])


@pytest.mark.slow
def test_round_trip_through_nwb_trains_and_reconstructs_the_same(session, traces, tmp_path, capsys):
    """A session exported to NWB, read back, trained and reconstructed gives the TIFF/manifest path's masked r."""
    from movie_reconstruction.cli import main
    from movie_reconstruction.io.nwb_session import write_session_nwb
    from movie_reconstruction.pipeline import build_stage
    from movie_reconstruction.progress import run
    from movie_reconstruction.results import ResultsFolder, load_results

    source = write_session_nwb(session.manifest, tmp_path / "session.nwb", traces, raw=False)
    scores = {}
    for name, path in (("manifest", session.manifest), ("nwb", source)):
        results = ResultsFolder.create(tmp_path / name)
        run(build_stage(results, path, traces))
        common = ["--scheduler", "none", "--threads", "1", "-q", "--device", "cpu", "--seed", "3"]
        assert main(["train", str(results.path), "--models", "1", "--epochs", "1", *common]) == 0
        assert main(["reconstruct", str(results.path), "--iterations", "4", "--no-controls", *common]) == 0
        scores[name] = {t.trial_id: t.correlation for t in load_results(results.path).trials}
    capsys.readouterr()
    assert scores["nwb"] and scores["nwb"].keys() == scores["manifest"].keys()
    assert np.isfinite(list(scores["manifest"].values())).all()
    for trial_id, r in scores["manifest"].items():
        assert scores["nwb"][trial_id] == pytest.approx(r, abs=1e-4)
