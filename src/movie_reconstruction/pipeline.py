"""The whole pipeline as job generators, shared by the ``movie-recon`` command line and the
napari "Run all" widget.

Each stage is a generator that yields :class:`~movie_reconstruction.progress.Progress` and
returns a typed result, writing into a :class:`~movie_reconstruction.results.ResultsFolder`::

    simulate_stage      -> SimulatedSession          (demo only)
    extract_stage       -> list[Traces]              suite2p, or an existing suite2p folder
    build_stage         -> Recording                 aligned, saved as results/recording
    train_stage         -> list[Path]                ensemble checkpoints + transparency mask
    reconstruct_stage   -> ReconstructionSummary     test trials, resumable, per-trial files
    controls_stage      -> dict                      controls table + neuron-count curve (+ control movies)
    evaluate_stage      -> Evaluation                verdicts, identification, resolution, reliability map
    report_stage        -> Path                      report.html

``run_session`` chains extract -> report for a session manifest; ``run_demo`` simulates a
session first. Nothing here imports Qt or napari; torch and suite2p are imported by the
stages that need them. ``client`` is a ``distributed.Client`` (see
:mod:`movie_reconstruction.distributed`) or None to run in this process, where progress is
finest and reconstruction previews come through for live display.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, RunWarning
from .losses import DEFAULT_LOSS
from .progress import Job, Progress, relabel
from .results import ResultsFolder, describe_inputs, identity_hash
from .results_recording import open_recording, recording_path_of as _recording_path_of
from .settings import PipelineSettings, checked_loss, reconstruction_config, with_changes  # noqa: F401 - re-exported

CONTROL_NAMES = ("shuffled", "time-reversed", "circular shift", "grey-screen prior")


@dataclass
class ReconstructionSummary:
    trial_ids: list[int]
    resumed: list[int]  # finished before this run, not redone
    failed: list[str]  # one line per failed task
    correlations: dict[int, float]
    seconds: float
    where: str

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class PipelineResult:
    results: Path
    report: Path | None
    reconstruction: ReconstructionSummary | None
    controls: dict | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reconstruction is None or self.reconstruction.ok


# ------------------------------------------------------------------------------------ helpers
def _timed(results: ResultsFolder, stage: str, timings: dict | None = None):
    started = time.perf_counter()

    def finish(**record):
        seconds = time.perf_counter() - started
        if timings is not None:
            timings[stage] = seconds
        results.record(stage, seconds=seconds, **record)
        return seconds

    return finish


def _writes_results(stage):
    """Run the stage holding the results folder's writer lock (re-entrant: a whole run holds it
    too), so that no other run writes into the folder meanwhile."""

    @functools.wraps(stage)
    def locked(results: ResultsFolder, *args, **kwargs):
        with results.lock():
            return (yield from stage(results, *args, **kwargs))

    return locked


def _device_name(device: str | None) -> str:
    from .device import describe, pick_device

    return describe(pick_device(device))


# ------------------------------------------------------------------------------------ stages
@_writes_results
def simulate_stage(results: ResultsFolder, preset: str = "quick", seed: int = 0) -> Job:
    """Simulate a session into ``results/session`` (reused when it is already there)."""
    from .simulate import SimulatedSession, SimulationConfig, simulate_session_job

    finish = _timed(results, "simulate")
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


@_writes_results
def extract_stage(results: ResultsFolder, manifest_path: str | Path, settings: PipelineSettings) -> Job:
    """Traces for the session: its own suite2p folder if the manifest names one, else suite2p on the raw stack."""
    from .extract import extract_traces, small_fov_overrides
    from .io.manifest import load_manifest
    from .io.suite2p_folder import read_suite2p_folder

    finish = _timed(results, "extract")
    manifest = load_manifest(manifest_path)
    inputs = describe_inputs([("manifest", manifest.path)] + [("raw", p) for p in manifest.raw])
    if manifest.suite2p is not None:
        yield Progress("extract", 0, 1, f"reading the suite2p folder {manifest.suite2p}")
        traces = read_suite2p_folder(manifest.suite2p, cell_threshold=settings.cell_threshold)
        used = {"suite2p_folder": manifest.suite2p}
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
    return traces


def _outside_paths(manifest) -> dict:
    """For the provenance: the paths a manifest was explicitly allowed to take from outside its folder."""
    if not manifest.outside_paths:
        return {}
    return {"paths_outside_manifest_folder": sorted({str(p) for p in manifest.outside_paths})}


@_writes_results
def build_stage(results: ResultsFolder, manifest_path: str | Path, traces=None, settings: PipelineSettings | None = None,
                *, nwb_options: dict | None = None) -> Job:
    """Align traces and behaviour onto the stimulus frames; save as ``results/recording`` (Sensorium layout).

    ``manifest_path``: a session manifest, or an NWB file (read with ``nwb_options``, see io/nwb.py).
    """
    from .align import recording_from_manifest
    from .io.manifest import load_manifest
    from .io.sensorium import read_sensorium, write_sensorium
    from .io.suite2p_folder import read_suite2p_folder

    settings = settings or PipelineSettings()
    if Path(manifest_path).suffix.lower() == ".nwb":
        return (yield from _build_from_nwb(results, Path(manifest_path), traces, settings, nwb_options or {}))
    finish = _timed(results, "build")
    manifest = load_manifest(manifest_path)
    if traces is None:
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
    from .io.nwb import read_nwb, recording_from_nwb
    from .io.sensorium import read_sensorium, write_sensorium
    from .io.suite2p_folder import read_suite2p_folder

    finish = _timed(results, "build")
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


@_writes_results
def train_stage(results: ResultsFolder, settings: PipelineSettings, *, recording_path=None, client=None) -> Job:
    """Train the ensemble (members are tasks), save checkpoints and the ensemble's transparency mask."""
    from .distributed import Task, train_member, train_member_job
    from .model import TrainConfig
    from .model.checkpoint import read_checkpoint_config
    from .model.registry import encoder_factory, kind_of

    finish = _timed(results, "train")
    recording_path = Path(recording_path or results.recording_dir)
    recording = open_recording(recording_path)
    if len(recording.indices("train")) == 0:
        raise InputError("the recording has no training trials", recording_path)
    device = _device_name(settings.device)
    overrides = {}
    if settings.max_epochs is not None:
        overrides["max_epochs"] = int(settings.max_epochs)
    if settings.max_minutes is not None:
        overrides["max_minutes"] = float(settings.max_minutes)
    try:
        training = TrainConfig.preset(settings.preset).replace(loss=checked_loss(settings), **overrides)
        encoder_factory(settings.encoder_kind)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    seeds = [settings.seed + k for k in range(settings.n_models)]

    def matches(k: int) -> bool:  # an existing checkpoint of this member, same seed and training settings
        folder = results.model_dir(k)
        if not (folder / "config.json").is_file():
            return False
        config = read_checkpoint_config(folder)
        if kind_of(config.get("encoder", {})) != settings.encoder_kind:
            return False
        done = config.get("training_metrics", {}).get("training", {})
        wanted = training.replace(seed=seeds[k]).to_dict()
        # a setting added after the checkpoint was written had its default value then
        defaults = TrainConfig().to_dict()
        return all(done.get(key, defaults[key]) == value for key, value in wanted.items() if key not in ("device",))

    todo = [k for k in range(settings.n_models) if settings.overwrite or not matches(k)]
    if len(todo) < settings.n_models:
        yield Progress("train", 0, None, f"{settings.n_models - len(todo)} model(s) already trained; training {len(todo)}")
    tasks = [
        Task(k, train_member, train_member_job,
             (str(recording_path), seeds[k], settings.preset, asdict(training)),
             {"device": settings.device, "threads": settings.threads, "init_core": settings.init_core,
              "kind": settings.encoder_kind},
             f"model {k + 1}/{settings.n_models}", {"member": k, "members": settings.n_models})
        for k in todo
    ]
    report = yield from _relabel_tasks(tasks, lambda k, blob: blob.write(results.model_dir(k)), client, settings.retries, "train")
    if report.failed:
        from .distributed import TasksFailed

        raise TasksFailed(f"{len(report.failed)} model(s) failed to train (trained ones are kept; re-run to retry): " + "; ".join(f"{f.label}: {f.error}" for f in report.failed))
    # members beyond n_models (an earlier, larger run) would silently join the ensemble: remove them
    for extra in results.checkpoints()[settings.n_models:]:
        shutil.rmtree(extra)
    checkpoints = results.checkpoints()
    _write_ensemble_mask(results, checkpoints)
    finish(settings={"preset": settings.preset, "encoder_kind": settings.encoder_kind, "training": asdict(training),
                     "n_models": settings.n_models,
                     "recording": str(recording_path.resolve())},
           seeds={"training": seeds}, device=device, where=report.where)
    return checkpoints


def _relabel_tasks(tasks, on_done, client, retries, stage):
    from .distributed import run_tasks

    return run_tasks(tasks, on_done, client=client, retries=retries, stage=stage)


def _write_ensemble_mask(results: ResultsFolder, checkpoints: Sequence[Path]) -> None:
    """The transparency mask of the ensemble: the mean of the members' readout-coverage estimates."""
    from .model import load_encoder
    from .reconstruct.mask import TransparencyMask, mask_for_model, save_mask

    alphas = [mask_for_model(load_encoder(p)).alpha for p in checkpoints]
    save_mask(TransparencyMask(np.mean(alphas, axis=0), method="readout (ensemble mean)",
                               settings={"members": len(alphas)}), results.mask_path)


def _load_mask(results: ResultsFolder) -> np.ndarray:
    from .reconstruct.mask import load_mask

    return load_mask(results.mask_path).alpha


def _ensemble(results: ResultsFolder, recording):
    """Checkpoint blobs of the ensemble, each checked against ``recording`` (neurons, frames, behaviour)."""
    from .distributed import CheckpointBlob
    from .model import load_encoder

    checkpoints = results.checkpoints()
    if not checkpoints:
        raise InputError("no trained models here (run `movie-recon train` first)", results.models_dir)
    for path in checkpoints:
        load_encoder(path, recording)  # raises InputError for a checkpoint made for other data
    if not results.mask_path.is_file():
        _write_ensemble_mask(results, checkpoints)
    return [CheckpointBlob.read(p) for p in checkpoints]


def _select_trials(recording, trial_ids) -> list[int]:
    """Positions of the trials to reconstruct: the given ids, or every test trial."""
    if trial_ids is None:
        positions = recording.indices("test").tolist()
        if not positions:
            raise InputError("the recording has no test trials; pass --trials", recording.source)
        return positions
    by_id = {int(t): i for i, t in enumerate(recording.trial_ids)}
    missing = [t for t in trial_ids if int(t) not in by_id]
    if missing:
        raise InputError(f"no trial(s) {missing} in the recording (ids {sorted(by_id)[:5]}...)", recording.source)
    return [by_id[int(t)] for t in trial_ids]


def _identity_settings(config) -> dict:
    """The reconstruction settings that identify a result; the default loss is left out, so that
    folders reconstructed before the loss table existed still resume."""
    settings = config.to_dict()
    if settings.get("loss") == DEFAULT_LOSS:
        del settings["loss"]
    return settings


def _reconstruction_inputs(results: ResultsFolder, settings: PipelineSettings, recording_path=None):
    """What reconstructions and controls both start from: the recording, the ensemble's
    checkpoints, the mask, the optimiser settings and the chosen trials' positions."""
    recording = open_recording(_recording_path_of(results, recording_path))
    blobs = _ensemble(results, recording)
    config = reconstruction_config(settings)
    _warn_if_trained_with_another_loss(results, config.loss)
    return recording, blobs, _load_mask(results), config, _select_trials(recording, settings.trials)


def _warn_if_trained_with_another_loss(results: ResultsFolder, loss: str) -> None:
    """Pixels optimised for another loss than the encoders were fitted with is allowed (a choice),
    but never unnoticed: ``train --loss`` does not carry over to a later ``reconstruct``."""
    trained = set()
    for path in results.checkpoints():
        meta = json.loads((path / "config.json").read_text())
        trained.add(((meta.get("training_metrics") or {}).get("training") or {}).get("loss", DEFAULT_LOSS))
    if trained and trained != {loss}:
        warnings.warn(f"the encoders were trained with the {', '.join(sorted(trained))} loss but the pixels are "
                      f"optimised for {loss}; pass --loss {sorted(trained)[0]} to match", RunWarning, stacklevel=2)


@_writes_results
def reconstruct_stage(
    results: ResultsFolder, settings: PipelineSettings, *, recording_path=None, client=None
) -> Job[ReconstructionSummary]:
    """Reconstruct the selected trials with every member (trials x members are tasks).

    A trial is written as soon as all its members are done, so an interrupted run keeps it,
    and a re-run with the same models and settings skips it.
    """
    from .distributed import Task, combine_members, reconstruct_member, reconstruct_member_job
    from .reconstruct.metrics import score_movie

    finish = _timed(results, "reconstruct")
    recording, blobs, alpha, config, positions = _reconstruction_inputs(results, settings, recording_path)
    identity = identity_hash({"config": _identity_settings(config), "models": [b.sha256 for b in blobs],
                              "mask": identity_hash(alpha.round(6).tolist())})

    every = results.finished_trials()
    stale = {tid for tid, meta in every.items() if meta.get("identity") != identity}
    wanted_ids = {int(recording.trial_ids[p]) for p in positions}
    if stale & wanted_ids:
        if not settings.overwrite:
            raise InputError(
                f"holds reconstructions of trial(s) {sorted(stale & wanted_ids)} made with other models or settings; "
                "pass --overwrite to replace them, or choose another results folder",
                results.path,
            )
    finished = {tid for tid, meta in every.items() if meta.get("identity") == identity}
    resumed = sorted(finished & wanted_ids)
    todo = [p for p in positions if int(recording.trial_ids[p]) not in finished]
    if resumed:
        yield Progress("reconstruct", 0, None, f"{len(resumed)} trial(s) already reconstructed; {len(todo)} to go")

    trials = {p: recording.trial(p) for p in todo}
    pending: dict[int, dict[int, object]] = {p: {} for p in todo}

    def on_done(key, member_movie):
        position, member = key
        pending[position][member] = member_movie
        if len(pending[position]) < len(blobs):
            return
        members = [pending[position][m] for m in range(len(blobs))]
        trial = trials[position]
        movie = combine_members([m.movie for m in members], config)
        scores = score_movie(movie, trial.video, alpha)
        results.write_trial(
            trial_id=trial.trial_id, tier=trial.tier, stimulus=trial.video, reconstruction=movie,
            member_movies=np.stack([m.movie for m in members]), correlation=scores.correlation, ssim=scores.ssim,
            frame_correlation=scores.frame_correlation, population_activity=trial.responses.mean(0),
            identity=identity,
            info={"member_losses": [m.losses.tolist() for m in members],
                  "iterations": [m.iterations for m in members],
                  "seconds": [m.seconds for m in members], "device": members[0].device,
                  "workers": [m.worker for m in members], "artifacts": scores.artifacts.to_dict()},
        )
        del pending[position]
        results.refresh_summaries()  # metrics follow every trial; controls made from its old version go stale

    tasks = [
        Task((p, m), reconstruct_member, reconstruct_member_job, (blobs[m], trials[p], config, alpha),
             {"device": settings.device, "threads": settings.threads},
             f"trial {trials[p].trial_id} · model {m + 1}/{len(blobs)}",
             {"trial_id": int(trials[p].trial_id), "member": m, "members": len(blobs)})
        for p in todo for m in range(len(blobs))
    ]
    report = yield from _relabel_tasks(tasks, on_done, client, settings.retries, "reconstruct")
    failed = [f"{f.label}: {f.error}" for f in report.failed]
    done = results.finished_trials(identity)
    results.refresh_summaries()
    finish(settings={"reconstruction": config.to_dict(), "trials": sorted(wanted_ids), "identity": identity},
           seeds={"reconstruction": config.seed}, device=_device_name(settings.device), where=report.where,
           failed=failed)
    return ReconstructionSummary(
        trial_ids=sorted(wanted_ids), resumed=resumed, failed=failed,
        correlations={tid: float(done[tid]["correlation"]) for tid in sorted(wanted_ids) if tid in done},
        seconds=report.seconds, where=report.where,
    )


# long: builds, runs and collects the controls' tasks; to be replaced by the one controls stage
# shared with reconstruct/controls.py (issue 22, finding 1).
@_writes_results
def controls_stage(
    results: ResultsFolder, settings: PipelineSettings, *, recording_path=None, client=None
) -> Job[dict]:
    """The controls table and the neuron-count curve for the reconstructed trials.

    ``shuffled`` pairs each trial's reconstruction with another trial's movie (no new work);
    the other controls and each neuron count reconstruct altered responses (trials x members tasks).
    """
    import dataclasses

    from .distributed import Task, combine_members, reconstruct_member, reconstruct_member_job
    from .model import load_encoder
    from .reconstruct.controls import ControlRow, ControlTable
    from .reconstruct.metrics import masked_correlation, predict

    finish = _timed(results, "controls")
    recording, blobs, alpha, config, positions = _reconstruction_inputs(results, settings, recording_path)
    finished = results.finished_trials()
    positions = [p for p in positions if int(recording.trial_ids[p]) in finished]
    if len(positions) < 2:
        raise InputError("controls need at least two reconstructed trials (the shuffled control pairs them)", results.path)
    trials = [recording.trial(p) for p in positions]
    sources = results.trial_sources()  # what the controls are computed from (the lock keeps it so)
    real_movies = [results.read_trial(t.trial_id).reconstruction for t in trials]

    def score(movies):
        return np.array([masked_correlation(m, t.video, alpha) for m, t in zip(movies, trials)])

    real = score(real_movies)
    n_neurons = recording.n_neurons
    counts = settings.neuron_counts
    if counts is None:
        counts = tuple(c for c in (n_neurons // 8, n_neurons // 4, n_neurons // 2) if c >= 5)
    counts = tuple(sorted({int(c) for c in counts if 0 < int(c) < n_neurons}))

    models = [load_encoder(p) for p in results.checkpoints()] if "grey-screen prior" in settings.control_variants else []
    unknown = sorted(set(settings.control_variants) - set(CONTROL_NAMES[1:]))
    if unknown:
        raise InputError(f"unknown control(s) {unknown}; choose from {list(CONTROL_NAMES[1:])}")
    makers = {
        "time-reversed": lambda t: dataclasses.replace(t, responses=np.ascontiguousarray(t.responses[:, ::-1])),
        "circular shift": lambda t: dataclasses.replace(t, responses=np.roll(t.responses, t.n_frames // 2, axis=1)),
        "grey-screen prior": lambda t: dataclasses.replace(
            t, responses=predict(models, np.full_like(t.video, config.start_grey), t, device="cpu")),
    }
    variants = {name: [makers[name](t) for t in trials] for name in CONTROL_NAMES[1:] if name in settings.control_variants}
    rng = np.random.default_rng(settings.seed)
    subsets = {c: np.sort(rng.choice(n_neurons, size=c, replace=False)) for c in counts}
    tasks = []
    for name, altered in variants.items():
        for i, trial in enumerate(altered):
            for m, blob in enumerate(blobs):
                tasks.append(Task((name, i, m), reconstruct_member, reconstruct_member_job, (blob, trial, config, alpha),
                                  {"device": settings.device, "threads": settings.threads},
                                  f"{name} · trial {trial.trial_id} · model {m + 1}"))
    for count, subset in subsets.items():
        for i, trial in enumerate(trials):
            for m, blob in enumerate(blobs):
                tasks.append(Task((f"{count} neurons", i, m), reconstruct_member, reconstruct_member_job,
                                  (blob, trial, config, alpha),
                                  {"neurons": subset, "device": settings.device, "threads": settings.threads},
                                  f"{count} neurons · trial {trial.trial_id} · model {m + 1}"))
    collected: dict[tuple[str, int], dict[int, np.ndarray]] = {}

    def on_done(key, member_movie):
        name, i, m = key
        collected.setdefault((name, i), {})[m] = member_movie.movie

    report = yield from _relabel_tasks(tasks, on_done, client, settings.retries, "controls")
    if report.failed:
        from .distributed import TasksFailed

        raise TasksFailed(f"{len(report.failed)} control reconstruction(s) failed: " + "; ".join(f"{f.label}: {f.error}" for f in report.failed[:3]))

    def movies_of(name):
        return [combine_members([collected[(name, i)][m] for m in range(len(blobs))], config) for i in range(len(trials))]

    control_movies = {name: movies_of(name) for name in variants}
    for name, movies in control_movies.items():  # kept: evaluate tests them against the real reconstructions
        for trial, movie in zip(trials, movies):
            results.write_control_movie(name, trial.trial_id, movie)
    rows = [ControlRow("shuffled", score([real_movies[(i + 1) % len(trials)] for i in range(len(trials))]), float(real.mean()))]
    rows += [ControlRow(name, score(control_movies[name]), float(real.mean())) for name in variants]
    curve = [(count, score(movies_of(f"{count} neurons"))) for count in counts] + [(n_neurons, real)]
    table = ControlTable(real, rows, curve)
    data = {
        "trial_ids": [t.trial_id for t in trials],
        "sources": {str(t.trial_id): sources[t.trial_id] for t in trials},
        "real_per_trial": real.tolist(),
        "rows": table.rows(),
        "per_trial": {row.name: row.per_trial.tolist() for row in rows},
        "neuron_curve": [{"neurons": int(n), "mean_r": float(np.mean(v)), "per_trial": np.asarray(v).tolist()} for n, v in curve],
        "markdown": table.to_markdown(),
    }
    results.write_controls(data)  # the verdicts are added by evaluate_stage, which tests the saved movies
    finish(settings={"neuron_counts": list(counts), "controls": ["shuffled", *variants]}, where=report.where)
    return data


@_writes_results
def evaluate_stage(results: ResultsFolder, settings: PipelineSettings) -> Job:
    """Statistics of the reconstructions and controls: verdicts, identification, resolution, reliability map."""
    from .evaluation import evaluate_results

    finish = _timed(results, "evaluate")
    yield Progress("evaluate", 0, 1, "statistics of the reconstructions and controls")
    evaluation = evaluate_results(results.path, seed=settings.seed)
    yield Progress("evaluate", 1, 1, evaluation.overall.sentence if evaluation.overall else "no controls to judge")
    finish(overall=evaluation.overall.verdict if evaluation.overall else None)
    return evaluation


@_writes_results
def report_stage(results: ResultsFolder) -> Job[Path]:
    from .report import write_report

    finish = _timed(results, "report")
    yield Progress("report", 0, 1, "rendering figures")
    path = write_report(results.path)
    yield Progress("report", 1, 1, f"wrote {path}")
    finish()
    return path


# ------------------------------------------------------------------------------------ whole runs
def run_session(
    manifest: str | Path,
    results_dir: str | Path,
    settings: PipelineSettings | None = None,
    *,
    client=None,
    command: Sequence[str] | None = None,
) -> Job[PipelineResult]:
    """Session manifest -> traces -> recording -> ensemble -> reconstructions -> controls -> report."""
    settings = settings or PipelineSettings()
    with ResultsFolder.writing(results_dir, command=command) as results:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        traces = yield from extract_stage(results, manifest, settings)
        yield from build_stage(results, manifest, traces, settings)
        return (yield from _model_to_report(results, settings, client, timings, started))


def _model_to_report(results, settings, client, timings, started) -> Job[PipelineResult]:
    yield from train_stage(results, settings, client=client)
    summary = yield from reconstruct_stage(results, settings, client=client)
    controls = None
    if settings.controls and summary.ok and len(summary.trial_ids) >= 2:
        yield from controls_stage(results, settings, client=client)
    if summary.correlations:
        yield from evaluate_stage(results, settings)
        controls = results.read_controls()
    report = None
    if settings.report:
        report = yield from report_stage(results)
    prov = results.provenance()
    timings = dict(prov.get("timings_s", {}))
    timings["total"] = time.perf_counter() - started
    return PipelineResult(results.path, report, summary, controls, timings)


def run_demo(
    results_dir: str | Path,
    *,
    quick: bool = False,
    settings: PipelineSettings | None = None,
    client=None,
    command: Sequence[str] | None = None,
) -> Job[PipelineResult]:
    """The whole pipeline on a simulated session (``quick``: the two-minute version)."""
    settings = settings or PipelineSettings.demo(quick)
    with ResultsFolder.writing(results_dir, command=command) as results:
        started = time.perf_counter()
        session = yield from simulate_stage(results, "quick" if quick else "default", settings.seed)
        traces = yield from extract_stage(results, session.manifest, settings)
        yield from build_stage(results, session.manifest, traces, settings)
        return (yield from _model_to_report(results, settings, client, {}, started))
