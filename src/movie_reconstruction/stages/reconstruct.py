"""Reconstruct: every chosen trial with every member (trials x members are tasks), each trial
written as soon as its members are done, so that a run resumes where it stopped."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..progress import Job, Progress
from ..results import ResultsFolder, identity_hash
from ..settings import PipelineSettings
from ..task_runner import Task, run_tasks
from ._base import ReconstructionSummary, device_name, identity_settings, reconstruction_inputs, timed, writes_results


@writes_results
def reconstruct_stage(
    results: ResultsFolder, settings: PipelineSettings, *, recording_path=None, client=None
) -> Job[ReconstructionSummary]:
    """Reconstruct the selected trials with every member (trials x members are tasks).

    A trial is written as soon as all its members are done, so an interrupted run keeps it,
    and a re-run with the same models and settings skips it.
    """
    from ..distributed import combine_members, reconstruct_member_job
    from ..reconstruct.metrics import score_movie

    finish = timed(results, "reconstruct")
    recording, blobs, alpha, config, positions = reconstruction_inputs(results, settings, recording_path)
    identity = identity_hash({"config": identity_settings(config), "models": [b.sha256 for b in blobs],
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
        Task((p, m), reconstruct_member_job, (blobs[m], trials[p], config, alpha),
             {"device": settings.device, "threads": settings.threads},
             f"trial {trials[p].trial_id} · model {m + 1}/{len(blobs)}",
             {"trial_id": int(trials[p].trial_id), "member": m, "members": len(blobs)})
        for p in todo for m in range(len(blobs))
    ]
    report = yield from run_tasks(tasks, on_done, client=client, retries=settings.retries, stage="reconstruct")
    failed = [f"{f.label}: {f.error}" for f in report.failed]
    done = results.finished_trials(identity)
    results.refresh_summaries()
    finish(settings={"reconstruction": config.to_dict(), "trials": sorted(wanted_ids), "identity": identity},
           seeds={"reconstruction": config.seed}, device=device_name(settings.device), where=report.where,
           failed=failed)
    return ReconstructionSummary(
        trial_ids=sorted(wanted_ids), resumed=resumed, failed=failed,
        correlations={tid: float(done[tid]["correlation"]) for tid in sorted(wanted_ids) if tid in done},
        seconds=report.seconds, where=report.where,
    )


