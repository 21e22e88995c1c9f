"""Train: the encoder ensemble, one task per member, and the ensemble's transparency mask."""

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

    ``stop``: an event (``is_set()``) that ends training early keeping each member's best state
    (the napari "Stop early" button); only in this process (``client=None``).
    """
    from ..distributed import train_member_job
    from ..model import TrainConfig
    from ..model.checkpoint import read_checkpoint_config
    from ..model.registry import encoder_factory, kind_of

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
    options = {"device": settings.device, "threads": settings.threads, "init_core": settings.init_core,
               "kind": settings.encoder_kind}
    if stop is not None and client is None:
        options["stop"] = stop
    tasks = [
        Task(k, train_member_job, (str(recording_path), seeds[k], settings.preset, asdict(training)), options,
             f"model {k + 1}/{settings.n_models}", {"member": k, "members": settings.n_models})
        for k in todo
    ]
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
                     "n_models": settings.n_models, "mask_method": settings.mask_method,
                     "recording": str(recording_path.resolve())},
           seeds={"training": seeds}, device=device, where=report.where)
    return checkpoints




def _train_members(tasks, results: ResultsFolder, settings: PipelineSettings, client, stop) -> Job:
    """Run the members' tasks; after a stop request, the members not yet started are not trained
    (the ensemble is the members trained so far; a later run trains the rest)."""
    def keep(k, blob):
        blob.write(results.model_dir(k))

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
