"""The stages before the model: simulate (the demo's mouse), extract (suite2p) and build (the
aligned recording, saved in the Sensorium layout)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import InputError
from ..progress import Job, Progress, relabel
from ..results import ResultsFolder, describe_inputs
from ..settings import PipelineSettings
from ._base import timed, writes_results


@writes_results
def simulate_stage(results: ResultsFolder, preset: str = "quick", seed: int = 0) -> Job:
    """Simulate a session into ``results/session`` (reused when it is already there)."""
    from ..simulate import SimulatedSession, SimulationConfig, simulate_session_job

    finish = timed(results, "simulate")
    config = SimulationConfig.preset(preset)
    if (results.session_dir / "simulation.json").is_file():
        session = SimulatedSession.open(results.session_dir)
        if session.config == config and session.seed == seed:
            yield Progress("simulate", 1, 1, f"reusing the simulated session in {session.path}")
            return session
        raise InputError("holds a simulated session with other settings; choose another results folder", results.session_dir)
    if results.session_dir.exists():
        shutil.rmtree(results.session_dir)  # an unfinished session (the writer is atomic, so this is debris)
    session = yield from relabel(simulate_session_job(results.session_dir, config, seed), "simulate", nest=True)
    finish(settings={"preset": preset, "config": config.to_dict()}, seeds={"simulation": int(seed)})
    return session


def _hints(manifest_path: Path) -> dict:
    info = manifest_path.parent / "simulation.json"
    if info.is_file():
        return json.loads(info.read_text()).get("suite2p_hints", {})
    return {}


@writes_results
def extract_stage(results: ResultsFolder, manifest_path: str | Path, settings: PipelineSettings) -> Job:
    """Traces for the session: its own suite2p folder if the manifest names one, else suite2p on the raw stack."""
    from ..extract import extract_traces, small_fov_overrides
    from ..io.manifest import load_manifest
    from ..io.suite2p_folder import read_suite2p_folder

    finish = timed(results, "extract")
    manifest = load_manifest(manifest_path)
    inputs = describe_inputs([("manifest", manifest.path)] + [("raw", p) for p in manifest.raw])
    if manifest.suite2p is not None:
        yield Progress("extract", 0, 1, f"reading the suite2p folder {manifest.suite2p}")
        traces = read_suite2p_folder(manifest.suite2p, cell_threshold=settings.cell_threshold)
        used = {"suite2p_folder": manifest.suite2p, "cell_threshold": settings.cell_threshold}
    else:
        hints = _hints(manifest.path)
        fs = settings.fs or manifest.imaging_frame_rate or hints.get("fs")
        tau = settings.tau or hints.get("tau") or 1.0
        diameter = settings.diameter or hints.get("diameter") or 12.0
        used = {"fs": fs, "tau": tau, "diameter": diameter, "cell_threshold": settings.cell_threshold,
                "small_fov": settings.small_fov}
        job = extract_traces(
            manifest.raw, results.extraction_dir, fs=fs, tau=tau, diameter=diameter,
            cell_threshold=settings.cell_threshold, device=settings.device,
            settings=small_fov_overrides(diameter) if settings.small_fov else None, overwrite=settings.overwrite,
        )
        traces = yield from relabel(job, "extract", nest=True)
    if not traces or sum(t.n_cells for t in traces) == 0:
        raise InputError("suite2p found no cells; try another diameter, tau or cell_threshold", manifest.raw[0] if manifest.raw else manifest.path)
    results.write_rois(traces)
    finish(settings=used, inputs=inputs, cells=[t.n_cells for t in traces], **_outside_paths(manifest))
    # front ends read the field of view from the folder now (run all shows it mid-run)
    yield Progress("extract", 1, 1, f"{sum(t.n_cells for t in traces)} cells", context={"stage_done": "extract"})
    return traces


def _outside_paths(manifest) -> dict:
    """For the provenance: the paths a manifest was explicitly allowed to take from outside its folder."""
    if not manifest.outside_paths:
        return {}
    return {"paths_outside_manifest_folder": sorted({str(p) for p in manifest.outside_paths})}


@writes_results
def build_stage(results: ResultsFolder, manifest_path, traces=None, settings: PipelineSettings | None = None,
                *, nwb_options: dict | None = None) -> Job:
    """Align traces and behaviour onto the stimulus frames; save as ``results/recording`` (Sensorium layout).

    ``manifest_path``: a session manifest (its path, or a :class:`~movie_reconstruction.io.manifest.SessionManifest`
    made in memory, as the napari widget does from chosen files), or an NWB file (read with
    ``nwb_options``, see io/nwb.py). ``traces``: the extracted traces, or None to read the
    manifest's suite2p folder (else ``results/extraction``).
    """
    from ..align import recording_from_manifest
    from ..io.manifest import SessionManifest, load_manifest
    from ..io.sensorium import read_sensorium, write_sensorium
    from ..io.suite2p_folder import read_suite2p_folder

    settings = settings or PipelineSettings()
    if not isinstance(manifest_path, SessionManifest) and Path(manifest_path).suffix.lower() == ".nwb":
        return (yield from _build_from_nwb(results, Path(manifest_path), traces, settings, nwb_options or {}))
    finish = timed(results, "build")
    manifest = manifest_path if isinstance(manifest_path, SessionManifest) else load_manifest(manifest_path)
    if traces is not None:
        results.write_rois(traces)
    else:
        source = manifest.suite2p or results.extraction_dir / "suite2p"
        if not Path(source).exists():
            raise InputError("no traces yet: run `movie-recon extract` first, or name a suite2p folder in the manifest", source)
        traces = read_suite2p_folder(source, cell_threshold=settings.cell_threshold)
        results.write_rois(traces)
    yield Progress("build", 0, 2, "aligning traces and behaviour onto stimulus frames")
    recording = recording_from_manifest(manifest, traces, signal=settings.signal)
    yield Progress("build", 1, 2, f"writing {results.recording_dir}")
    write_sensorium(recording, results.recording_dir, overwrite=True)
    yield Progress("build", 2, 2, repr(recording))
    named = [("stimulus movie", manifest.stimulus_movie), ("stimulus frame times", manifest.stimulus_frame_times),
             ("imaging frame times", manifest.imaging_frame_times), ("trials", manifest.trials),
             ("sync signals", manifest.sync.file if manifest.sync else None)]
    inputs = describe_inputs([(role, p) for role, p in named if p is not None] + [("behaviour", p) for p in manifest.behaviour_files])
    if "sync_line" in recording.extra:
        yield Progress("build", 2, 2, recording.extra["sync_line"])
    finish(settings={"signal": settings.signal, "behaviour_method": manifest.behaviour_method},
           inputs=inputs, recording=repr(recording), missing_behaviour=recording.extra.get("missing_behaviour", []),
           sync=recording.extra.get("sync"), sync_summary=recording.extra.get("sync_summary"),
           unshown_stimulus_frames=int(recording.extra.get("unshown_stimulus_frames", 0)), **_outside_paths(manifest))
    return read_sensorium(results.recording_dir)


def _build_from_nwb(results: ResultsFolder, path: Path, traces, settings: PipelineSettings, options: dict) -> Job:
    from ..io.nwb import read_nwb, recording_from_nwb
    from ..io.sensorium import read_sensorium, write_sensorium
    from ..io.suite2p_folder import read_suite2p_folder

    finish = timed(results, "build")
    yield Progress("build", 0, 2, f"reading {path.name}")
    session = read_nwb(path, **options)
    if traces is None and not session.traces:
        source = results.extraction_dir / "suite2p"
        if not source.exists():
            raise InputError("the NWB file holds no ROI responses, only raw frames: extract them with suite2p and "
                             "pass the output folder with --suite2p", path)
        traces = read_suite2p_folder(source, cell_threshold=settings.cell_threshold)
    if traces is None:
        results.write_rois(session.traces)
    recording = recording_from_nwb(session, traces, signal=settings.signal)
    yield Progress("build", 1, 2, f"writing {results.recording_dir}")
    write_sensorium(recording, results.recording_dir, overwrite=True)
    yield Progress("build", 2, 2, repr(recording))
    finish(settings={"signal": settings.signal, **options}, inputs=describe_inputs([("NWB session", path)]),
           recording=repr(recording), nwb_objects=recording.extra["nwb_objects"], nwb_notes=recording.extra["nwb_notes"],
           missing_behaviour=recording.extra.get("missing_behaviour", []))
    return read_sensorium(results.recording_dir)


