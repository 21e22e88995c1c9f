"""A generic runner of independent tasks, here or on a Dask cluster: each task is a job factory
(run in this process with live progress) and a plain function (run on a worker); failures are
retried, and what still fails is reported while finished work is kept
(:mod:`movie_reconstruction.distributed` defines the project's tasks on top of it)."""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .progress import Job, Progress, run

DEFAULT_RETRIES = 2


class TasksFailed(RuntimeError):
    """Some tasks failed after their retries; the finished ones were kept."""


# ------------------------------------------------------------------------------------ running tasks
@dataclass
class Task:
    """One unit of work: the job generator ``job(*args, **kwargs)``, driven here with its progress,
    or run to the end on a Dask worker (:func:`run_job`): the work is defined once."""

    key: Any
    job: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    context: dict = field(default_factory=dict)  # passed on in every Progress of the task (Progress.context)


@dataclass
class TaskFailure:
    key: Any
    label: str
    error: str


@dataclass
class TaskReport:
    finished: list = field(default_factory=list)
    failed: list[TaskFailure] = field(default_factory=list)
    seconds: float = 0.0
    where: str = "serial"

    @property
    def ok(self) -> bool:
        return not self.failed


def run_job(job: Callable, *args, **kwargs):
    """A job run to the end, its progress dropped: what a Dask worker runs for a :class:`Task`."""
    return run(job(*args, **kwargs))


def run_tasks(
    tasks: Sequence[Task],
    on_done: Callable[[Any, Any], None],
    *,
    client=None,
    retries: int = DEFAULT_RETRIES,
    stage: str = "tasks",
) -> Job[TaskReport]:
    """Run ``tasks`` here (``client=None``) or on a Dask cluster; call ``on_done(key, result)``
    in this process as each finishes (that is where results are written, so finished work is
    kept whatever happens to later tasks). Yields :class:`Progress`; returns a :class:`TaskReport`.
    """
    started = time.perf_counter()
    if client is None:
        report = yield from _run_serial(tasks, on_done, retries, stage)
    else:
        report = yield from _run_dask(tasks, on_done, client, retries, stage)
    report.seconds = time.perf_counter() - started
    return report


def _run_serial(tasks, on_done, retries, stage) -> Job[TaskReport]:
    report = TaskReport(where="serial")
    for number, task in enumerate(tasks):
        for attempt in range(retries + 1):
            try:
                job = task.job(*task.args, **task.kwargs)
                while True:
                    try:
                        event = next(job)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    # one bar over all tasks: a task's own fraction moves us within its slot
                    fraction = event.fraction or 0.0
                    yield Progress(stage, number * 1000 + int(1000 * fraction), len(tasks) * 1000,
                                   f"{task.label}: {event.message}", event.metrics, event.preview,
                                   {**event.context, **task.context})
            except InputError:
                raise
            except Exception as exc:  # a task's failure is reported, the run goes on
                if attempt < retries:
                    continue
                report.failed.append(TaskFailure(task.key, task.label, _one_line(exc)))
                break
            on_done(task.key, result)
            report.finished.append(task.key)
            break
        outcome = "failed" if report.failed and report.failed[-1].key == task.key else "done"
        yield Progress(stage, (number + 1) * 1000, len(tasks) * 1000, f"{task.label}: {outcome}",
                       context=dict(task.context))
    return report


def _run_dask(tasks, on_done, client, retries, stage) -> Job[TaskReport]:
    from distributed import as_completed

    report = TaskReport(where=_describe_client(client))
    token = hashlib.sha256(f"{time.time_ns()}{os.getpid()}".encode()).hexdigest()[:8]
    futures = {}
    with warnings.catch_warnings():
        # Each task carries its checkpoint and trial (a few MB); Dask's "large graph" advice is
        # for arrays it could load itself. Scattering them instead made the killed-worker test's
        # tasks come back cancelled.
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        for task in tasks:
            future = client.submit(
                run_job, task.job, *task.args, **task.kwargs,
                key=f"movie-recon-{stage}-{task.key}-{token}".replace(" ", "_"), retries=retries, pure=False,
            )
            futures[future] = task
    yield Progress(stage, 0, len(tasks), f"{len(tasks)} task(s) submitted to {report.where}")
    done = 0
    try:
        for future in as_completed(list(futures)):
            task = futures[future]
            finished = future.status == "finished"  # read before release(), which changes the status
            if not finished:  # an error after its retries, or cancelled by the cluster
                exc = future.exception() if future.status == "error" else RuntimeError(f"task {future.status}")
                if isinstance(exc, InputError):
                    raise exc
                report.failed.append(TaskFailure(task.key, task.label, _one_line(exc)))
            else:
                on_done(task.key, future.result())
                report.finished.append(task.key)
            future.release()
            done += 1
            yield Progress(stage, done, len(tasks), f"{task.label}: {'done' if finished else 'failed'}",
                           context=dict(task.context))
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
    return report


def _describe_client(client) -> str:
    try:
        workers = client.scheduler_info().get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        return f"dask {client.scheduler.address} ({len(workers)} workers, {threads} threads)"
    except Exception:  # information only
        return "dask"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()
