"""Distributed runs on a real LocalCluster (2 worker processes): the same result as the serial
run, a killed worker loses no finished trial, a failing task is reported while the others finish."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from movie_reconstruction.distributed import Task, dask_client, run_tasks
from movie_reconstruction.errors import InputError
from movie_reconstruction.pipeline import PipelineSettings, reconstruct_stage, with_changes
from movie_reconstruction.progress import run
from movie_reconstruction.results import ResultsFolder

from test_results import tiny_recording, untrained_checkpoints

# the failing task below is defined here; workers get it by value, not by importing this file
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SETTINGS = with_changes(PipelineSettings(), n_models=2, iterations=6, device="cpu", threads=1, controls=False, retries=2)


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=2, threads_per_worker=1, processes=True) as client:
        yield client


def _results(path, n_trials=8, n_test=3, n_models=2):
    results = ResultsFolder.create(path)
    tiny_recording(results.recording_dir, n_trials=n_trials, n_test=n_test, frames=40, neurons=20)
    untrained_checkpoints(results, n_models)
    return results


def test_distributed_equals_serial(tmp_path, client):
    serial = _results(tmp_path / "serial")
    distributed = _results(tmp_path / "distributed")
    summary_serial = run(reconstruct_stage(serial, SETTINGS))
    summary_dask = run(reconstruct_stage(distributed, SETTINGS, client=client))
    assert summary_serial.where == "serial" and summary_dask.where.startswith("dask")
    assert summary_serial.trial_ids == summary_dask.trial_ids == [5, 6, 7]
    for tid in summary_serial.trial_ids:
        a, b = serial.read_trial(tid), distributed.read_trial(tid)
        np.testing.assert_allclose(a.reconstruction, b.reconstruction, atol=1e-3)
        assert a.correlation == pytest.approx(b.correlation, abs=1e-5)
        assert b.info["workers"][0].startswith("tcp://")  # it really ran on the cluster
    assert summary_serial.correlations == pytest.approx(summary_dask.correlations, abs=1e-5)


def test_killed_worker_loses_no_finished_trial(tmp_path, client):
    results = _results(tmp_path / "res", n_trials=12, n_test=8, n_models=1)
    settings = with_changes(PipelineSettings(), n_models=1, iterations=25, device="cpu", threads=1, controls=False,
                                trials=tuple(range(4, 12)))
    pids = list(client.run(os.getpid).values())
    job = reconstruct_stage(results, settings, client=client)
    kept: dict[int, int] = {}
    killed = False
    while True:
        try:
            next(job)
        except StopIteration as stop:
            summary = stop.value
            break
        finished = results.finished_trials()
        if finished and not killed:
            # a trial is safely written; kill a worker while others are still running
            kept = {tid: results.trial_dir(tid).joinpath("trial.json").stat().st_mtime_ns for tid in finished}
            os.kill(pids[0], signal.SIGKILL)
            killed = True
    assert killed, "no trial finished before the end: the test did not exercise a kill"
    assert summary.ok, summary.failed
    assert sorted(summary.correlations) == list(range(4, 12))
    for tid, stamp in kept.items():  # finished trials were neither lost nor redone
        assert results.trial_dir(tid).joinpath("trial.json").stat().st_mtime_ns == stamp
    assert len(results.finished_trials()) == 8
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


def _fails_on_three(x):
    if x == 3:
        raise RuntimeError("simulated crash on item 3")
    return x * x


def _job(x):
    yield from ()
    return _fails_on_three(x)


@pytest.mark.parametrize("where", ["serial", "dask"])
def test_failed_task_is_reported_and_the_rest_kept(where, client):
    done, messages = {}, []
    tasks = [Task(i, _job, (i,), label=f"item {i}") for i in range(6)]
    report = run(run_tasks(tasks, lambda k, v: done.__setitem__(k, v), client=client if where == "dask" else None,
                           retries=1, stage="test"), on_progress=lambda event: messages.append(event.message))
    assert done == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert [f.key for f in report.failed] == [3] and "simulated crash on item 3" in report.failed[0].error
    assert not report.ok
    # the progress line of each task tells the truth (Dask's status once read after release() said "failed")
    assert [m for m in messages if m.endswith(": failed")] == ["item 3: failed"]
    assert {f"item {i}: done" for i in (0, 1, 2, 4, 5)} <= set(messages)


def _flaky(attempts_file, failures):
    """Fail the first ``failures`` calls (counted in a file: Dask's retries may run elsewhere)."""
    path = Path(attempts_file)
    before = len(path.read_text().splitlines()) if path.exists() else 0
    with path.open("a") as fh:
        fh.write(f"attempt {before + 1} in process {os.getpid()}\n")
    if before < failures:
        raise RuntimeError(f"simulated failure on attempt {before + 1}")
    return f"result of attempt {before + 1}"


def _flaky_job(attempts_file, failures):
    yield from ()
    return _flaky(attempts_file, failures)


def _attempts(path) -> int:
    return len(Path(path).read_text().splitlines())


@pytest.mark.parametrize("where", ["serial", "dask"])
def test_a_task_that_fails_once_is_retried_and_its_result_used(where, client, tmp_path):
    done = {}
    tasks = [Task(k, _flaky_job, (tmp_path / f"{k}.txt", failures), label=k)
             for k, failures in (("steady", 0), ("flaky", 1), ("twice", 2))]
    report = run(run_tasks(tasks, done.__setitem__, client=client if where == "dask" else None, retries=2, stage="test"))
    assert report.ok and report.failed == []
    assert sorted(report.finished) == ["flaky", "steady", "twice"]
    assert done == {"steady": "result of attempt 1", "flaky": "result of attempt 2", "twice": "result of attempt 3"}
    assert [_attempts(tmp_path / f"{k}.txt") for k in ("steady", "flaky", "twice")] == [1, 2, 3]


@pytest.mark.parametrize("where", ["serial", "dask"])
@pytest.mark.parametrize("retries", [0, 2])
def test_a_failing_task_runs_exactly_retries_plus_one_times(where, retries, client, tmp_path):
    done = {}
    attempts = tmp_path / "always.txt"
    tasks = [Task("always", _flaky_job, (attempts, 99), label="always fails")]
    report = run(run_tasks(tasks, done.__setitem__, client=client if where == "dask" else None, retries=retries,
                           stage="test"))
    assert done == {} and report.finished == [] and not report.ok
    assert [f.key for f in report.failed] == ["always"]
    assert f"simulated failure on attempt {retries + 1}" in report.failed[0].error
    assert _attempts(attempts) == retries + 1


def _bad_input(x):
    raise InputError("bad trial file", f"/data/{x}.npy")


def test_bad_input_stops_the_run(client):
    tasks = [Task(0, lambda x: (yield from ()) or _bad_input(x), (0,))]
    with pytest.raises(InputError, match="bad trial file"):
        run(run_tasks(tasks, lambda k, v: None, client=client, retries=0))
