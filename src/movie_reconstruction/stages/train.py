"""Train: the encoder ensemble, one task per member (or one task for a snapshot ensemble), and the
ensemble's transparency mask."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from ..errors import InputError
from ..progress import Job, Progress
from ..results import ResultsFolder
from ..results_recording import open_recording
from ..settings import PipelineSettings, training_config
from ..task_runner import Task, TaskReport, TasksFailed, run_tasks
from ._base import device_name, timed, write_ensemble_mask, writes_results


@writes_results
def train_stage(results: ResultsFolder, settings: PipelineSettings, *, recording_path=None, client=None,
                stop=None) -> Job[list[Path]]:
    """Train the ensemble (members are tasks), save checkpoints and the ensemble's transparency mask.

    With ``settings.ensemble_method == "snapshots"`` the ensemble is one task, one training run
    whose learning-rate schedule yields the members (``model.snapshots``), with the threads the
    members' tasks would have had together.

    ``stop``: an event (``is_set()``) that ends training early keeping each member's best state
    (the napari "Stop early" button); only in this process (``client=None``).
    """
    from ..model.registry import encoder_factory

    finish = timed(results, "train")
    recording_path = Path(recording_path or results.recording_dir)
    recording = open_recording(recording_path)
    if len(recording.indices("train")) == 0:
        raise InputError("the recording has no training trials", recording_path)
    device = device_name(settings.device)
    training = training_config(settings)
    try:
        encoder_factory(settings.encoder_kind)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    snapshots = settings.ensemble_method == "snapshots"
    seeds = [settings.seed] if snapshots else [settings.seed + k for k in range(settings.n_models)]
    options = {"device": settings.device, "threads": settings.threads, "init_core": settings.init_core,
               "kind": settings.encoder_kind}
    if stop is not None and client is None:
        options["stop"] = stop
    if snapshots:
        tasks = yield from _snapshot_tasks(results, settings, training, recording_path, client, options)
    else:
        tasks = yield from _independent_tasks(results, settings, training, recording_path, options)
    report = yield from _train_members(tasks, results, settings, client, stop)
    if report.failed:
        raise TasksFailed(f"{len(report.failed)} model(s) failed to train (trained ones are kept; re-run to retry): " + "; ".join(f"{f.label}: {f.error}" for f in report.failed))
    # members beyond n_models (an earlier, larger run) would silently join the ensemble: remove them
    for extra in results.checkpoints()[settings.n_models:]:
        shutil.rmtree(extra)
    checkpoints = results.checkpoints()
    yield from write_ensemble_mask(results, checkpoints, settings.mask_method, recording=recording,
                                   device=settings.device)
    finish(settings={"preset": settings.preset, "encoder_kind": settings.encoder_kind, "training": asdict(training),
                     "n_models": settings.n_models, "ensemble_method": settings.ensemble_method,
                     "mask_method": settings.mask_method, "recording": str(recording_path.resolve())},
           seeds={"training": seeds}, device=device, where=report.where)
    return checkpoints


def _member_matches(results: ResultsFolder, settings: PipelineSettings, training, k: int, seed: int,
                    snapshot: bool) -> bool:
    """Whether ``model_k`` exists, of this encoder kind and training settings with ``seed``, and was
    made the same way: as member ``k`` of a complete snapshot run of ``n_models``, or on its own."""
    from ..model import TrainConfig
    from ..model.budget import SNAPSHOT
    from ..model.checkpoint import read_checkpoint_config
    from ..model.registry import kind_of

    folder = results.model_dir(k)
    if not (folder / "config.json").is_file():
        return False
    config = read_checkpoint_config(folder)
    if kind_of(config.get("encoder", {})) != settings.encoder_kind:
        return False
    metrics = config.get("training_metrics", {})
    made_as = metrics.get("snapshot")
    if snapshot:
        wanted_place = {"member": k, "members": settings.n_models}
        if not made_as or {key: made_as.get(key) for key in wanted_place} != wanted_place \
                or metrics.get("stop_reason") != SNAPSHOT:  # a run stopped before this snapshot kept another state
            return False
    elif made_as:
        return False
    done = metrics.get("training", {})
    wanted = training.replace(seed=seed).to_dict()
    # a setting added after the checkpoint was written had its default value then
    defaults = TrainConfig().to_dict()
    return all(done.get(key, defaults[key]) == value for key, value in wanted.items() if key not in ("device",))


def _independent_tasks(results, settings: PipelineSettings, training, recording_path, options) -> Job[list[Task]]:
    """One task per member not yet trained with these settings."""
    from ..distributed import train_member_job

    seeds = [settings.seed + k for k in range(settings.n_models)]
    todo = [k for k in range(settings.n_models)
            if settings.overwrite or not _member_matches(results, settings, training, k, seeds[k], snapshot=False)]
    if len(todo) < settings.n_models:
        yield Progress("train", 0, None, f"{settings.n_models - len(todo)} model(s) already trained; training {len(todo)}")
    return [
        Task(k, train_member_job, (str(recording_path), seeds[k], settings.preset, asdict(training)), options,
             f"model {k + 1}/{settings.n_models}", {"member": k, "members": settings.n_models})
        for k in todo
    ]


def _snapshot_tasks(results, settings: PipelineSettings, training, recording_path, client, options) -> Job[list[Task]]:
    """The snapshot ensemble as one task, unless all its members are already there (it is trained
    as a unit: one missing or different member means training the whole run again)."""
    from ..distributed import train_snapshots_job
    from ..model.snapshots import phase_epochs

    try:  # refuse too few epochs here, before the run starts
        phase_epochs(training.max_epochs, settings.n_models, training.snapshot_cycle_fraction)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    done = not settings.overwrite and all(
        _member_matches(results, settings, training, k, settings.seed, snapshot=True) for k in range(settings.n_models))
    if done:
        yield Progress("train", 0, None, f"the snapshot ensemble of {settings.n_models} is already trained")
        return []
    options = {**options, "threads": snapshot_threads(settings, client)}
    # No member in the task's context: the run's own events say which snapshot is being made.
    return [Task("snapshots", train_snapshots_job,
                 (str(recording_path), settings.seed, settings.preset, asdict(training), settings.n_models), options,
                 f"snapshot ensemble of {settings.n_models}")]


def snapshot_threads(settings: PipelineSettings, client) -> int | None:
    """Torch threads for the one snapshot run: all the threads the members' tasks would have had
    (``threads`` per worker, or each worker's own), or ``threads`` here (None: the process's own).
    The job caps this at the cores its machine has."""
    if client is None:
        return settings.threads
    try:
        workers = client.scheduler_info().get("workers", {})
    except Exception:  # noqa: BLE001 - information only: fall back to the setting
        return settings.threads
    total = sum(settings.threads or int(worker.get("nthreads", 1)) for worker in workers.values())
    return total or settings.threads


def _train_members(tasks, results: ResultsFolder, settings: PipelineSettings, client, stop) -> Job:
    """Run the members' tasks; after a stop request, the members not yet started are not trained
    (the ensemble is the members trained so far; a later run trains the rest)."""
    def keep(k, blob):
        if k != "snapshots":
            blob.write(results.model_dir(k))
            return
        for member, member_blob in enumerate(blob):
            member_blob.write(results.model_dir(member))
        # the ensemble is this run's members alone: older members past them are not its snapshots
        for older in results.checkpoints()[len(blob):]:
            shutil.rmtree(older)

    if stop is None or client is not None:
        return (yield from run_tasks(tasks, keep, client=client, retries=settings.retries, stage="train"))
    report = None
    for task in tasks:
        if stop.is_set():
            yield Progress("train", 1, 1, f"stopped early: {task.label} and later members not trained")
            break
        one = yield from run_tasks([task], keep, client=None, retries=settings.retries, stage="train")
        if report is None:
            report = one
        else:
            report.finished += one.finished
            report.failed += one.failed
            report.seconds += one.seconds
    return report or TaskReport()
