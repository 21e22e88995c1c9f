"""Controls, statistics and the report: is the reconstruction what the mouse saw, or what the
model outputs anyway? The controls themselves are defined once, in
:mod:`movie_reconstruction.reconstruct.controls`; this stage runs them as tasks on the
results folder's reconstructed trials."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Job, Progress
from ..results import ResultsFolder
from ..settings import PipelineSettings
from ..task_runner import Task, TasksFailed, run_tasks
from ._base import reconstruction_inputs, timed, writes_results


@writes_results
def controls_stage(
    results: ResultsFolder, settings: PipelineSettings, *, recording_path=None, client=None
) -> Job[dict]:
    """The controls table and the neuron-count curve for the reconstructed trials.

    ``shuffled`` pairs each trial's reconstruction with another trial's movie (no new work);
    the other controls and each neuron count reconstruct altered responses (trials x members tasks).
    """
    from ..distributed import combine_members
    from ..reconstruct.controls import (ControlRow, ControlTable, default_neuron_counts, neuron_subsets,
                                        shuffled_donors)
    from ..reconstruct.metrics import masked_correlation

    finish = timed(results, "controls")
    recording, blobs, alpha, config, positions = reconstruction_inputs(results, settings, recording_path)
    finished = results.finished_trials()
    positions = [p for p in positions if int(recording.trial_ids[p]) in finished]
    if len(positions) < 2:
        raise InputError("controls need at least two reconstructed trials (the shuffled control pairs them)", results.path)
    trials = [recording.trial(p) for p in positions]
    sources = results.trial_sources()  # what the controls are computed from (the lock keeps it so)
    real_movies = [results.read_trial(t.trial_id).reconstruction for t in trials]

    def score(movies):
        return np.array([masked_correlation(m, t.video, alpha) for m, t in zip(movies, trials)])

    n_neurons = recording.n_neurons
    counts = settings.neuron_counts if settings.neuron_counts is not None else default_neuron_counts(n_neurons)
    subsets = neuron_subsets(n_neurons, counts, settings.seed)
    variants = _control_trials(results, settings, trials, config)
    tasks = _control_tasks(variants, subsets, trials, blobs, config, alpha, settings)
    collected: dict[tuple[str, int], dict[int, np.ndarray]] = {}

    def on_done(key, member_movie):
        name, i, m = key
        collected.setdefault((name, i), {})[m] = member_movie.movie

    report = yield from run_tasks(tasks, on_done, client=client, retries=settings.retries, stage="controls")
    if report.failed:
        raise TasksFailed(f"{len(report.failed)} control reconstruction(s) failed: "
                          + "; ".join(f"{f.label}: {f.error}" for f in report.failed[:3]))

    def movies_of(name):
        return [combine_members([collected[(name, i)][m] for m in range(len(blobs))], config) for i in range(len(trials))]

    control_movies = {name: movies_of(name) for name in variants}
    for name, movies in control_movies.items():  # kept: evaluate tests them against the real reconstructions
        for trial, movie in zip(trials, movies):
            results.write_control_movie(name, trial.trial_id, movie)
    real = score(real_movies)
    shuffled = [real_movies[j] for j in shuffled_donors(len(trials))]
    rows = [ControlRow("shuffled", score(shuffled), float(real.mean()))]
    rows += [ControlRow(name, score(control_movies[name]), float(real.mean())) for name in variants]
    curve = [(count, score(movies_of(f"{count} neurons"))) for count in subsets] + [(n_neurons, real)]
    table = ControlTable(real, rows, curve)
    data = {
        "trial_ids": [t.trial_id for t in trials],
        "sources": {str(t.trial_id): sources[t.trial_id] for t in trials},
        "real_per_trial": real.tolist(),
        "rows": table.rows(),
        "per_trial": {row.name: row.per_trial.tolist() for row in rows},
        "neuron_curve": [{"neurons": int(n), "mean_r": float(np.mean(v)), "per_trial": np.asarray(v).tolist()}
                         for n, v in curve],
        "markdown": table.to_markdown(),
    }
    results.write_controls(data)  # the verdicts are added by evaluate_stage, which tests the saved movies
    finish(settings={"neuron_counts": list(subsets), "controls": ["shuffled", *variants]}, where=report.where)
    return data


def _control_trials(results: ResultsFolder, settings: PipelineSettings, trials, config) -> dict[str, list]:
    """The trials with each chosen reconstructing control's responses."""
    from ..model import load_encoder
    from ..reconstruct.controls import RECONSTRUCTING_CONTROLS, altered_trials

    unknown = sorted(set(settings.control_variants) - set(RECONSTRUCTING_CONTROLS))
    if unknown:
        raise InputError(f"unknown control(s) {unknown}; choose from {list(RECONSTRUCTING_CONTROLS)}")
    chosen = [name for name in RECONSTRUCTING_CONTROLS if name in settings.control_variants]
    models = [load_encoder(p) for p in results.checkpoints()] if "grey-screen prior" in chosen else []
    return {name: altered_trials(name, trials, models, start_grey=config.start_grey, device="cpu") for name in chosen}


def _control_tasks(variants: dict, subsets: dict, trials, blobs, config, alpha, settings: PipelineSettings) -> list[Task]:
    from ..distributed import reconstruct_member_job

    options = {"device": settings.device, "threads": settings.threads}
    tasks = []
    for name, altered in variants.items():
        for i, trial in enumerate(altered):
            for m, blob in enumerate(blobs):
                tasks.append(Task((name, i, m), reconstruct_member_job, (blob, trial, config, alpha), options,
                                  f"{name} · trial {trial.trial_id} · model {m + 1}",
                                  {"control": name, "trial_id": int(trial.trial_id), "member": m, "members": len(blobs)}))
    for count, subset in subsets.items():
        for i, trial in enumerate(trials):
            for m, blob in enumerate(blobs):
                tasks.append(Task((f"{count} neurons", i, m), reconstruct_member_job, (blob, trial, config, alpha),
                                  {**options, "neurons": subset}, f"{count} neurons · trial {trial.trial_id} · model {m + 1}",
                                  {"neurons": count, "trial_id": int(trial.trial_id), "member": m,
                                   "members": len(blobs)}))
    return tasks


@writes_results
def evaluate_stage(results: ResultsFolder, settings: PipelineSettings) -> Job:
    """Statistics of the reconstructions and controls: verdicts, identification, resolution, reliability map."""
    from ..evaluation import evaluate_results

    finish = timed(results, "evaluate")
    yield Progress("evaluate", 0, 1, "statistics of the reconstructions and controls")
    evaluation = evaluate_results(results.path, seed=settings.seed)
    yield Progress("evaluate", 1, 1, evaluation.overall.sentence if evaluation.overall else "no controls to judge")
    finish(overall=evaluation.overall.verdict if evaluation.overall else None)
    return evaluation


@writes_results
def report_stage(results: ResultsFolder) -> Job[Path]:
    from ..report import write_report

    finish = timed(results, "report")
    yield Progress("report", 0, 1, "rendering figures")
    path = write_report(results.path)
    yield Progress("report", 1, 1, f"wrote {path}")
    finish()
    return path
