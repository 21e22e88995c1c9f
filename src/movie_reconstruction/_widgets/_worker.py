"""The worker thread of a widget's job: a napari generator worker that drives a core job (a
generator of Progress events), stops it at its next event when cancelled, and closes the core
generator in its own thread, so the job's cleanup (its ``finally`` blocks: suite2p's thread,
the results folder's lock) runs there and finishes before the thread ends."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from superqt.utils import GeneratorWorker


class Cancelled:
    """Returned by a job's worker when the user cancelled it."""


CANCELLED = Cancelled()


class Failed:
    """Returned by a job's worker when the core job raised: carried to the GUI thread as a value,
    because superqt turns a RuntimeError (torch raises many) into a warning about an "aborted
    thread" and drops it."""

    def __init__(self, error: BaseException):
        self.error = error


def _drive(make_job: Callable, cancel: threading.Event):
    """Run in the worker thread: create the core job, pass its events on, stop when cancelled."""
    try:
        job = make_job()
    except Exception as exc:  # noqa: BLE001 - reported by the GUI thread
        return Failed(exc)
    if not hasattr(job, "__next__"):  # a plain result, no progress to report
        return job
    try:
        while True:
            if cancel.is_set():
                return CANCELLED
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            except Exception as exc:  # noqa: BLE001 - reported by the GUI thread
                return Failed(exc)
            yield event
    finally:
        job.close()  # cancellation of the core's jobs: they clean up in their finally blocks


class _Titled(functools.partial):
    """``_drive`` under the job's title: napari names a worker by ``str(function)`` in the
    "close the window while tasks run?" dialog."""

    def __str__(self) -> str:
        return self.title


class JobWorker(GeneratorWorker):
    """A generator worker whose ``quit`` cancels the job cleanly.

    napari calls ``quit`` when the viewer's window closes while the worker runs (after asking
    the user) and when the application quits (``WorkerBase.await_workers``). The base class's
    ``quit`` would leave the generator unclosed, to be closed later by the garbage collector
    in whichever thread drops it; here it stops the job at its next event, in this thread.
    ``when_quit`` callbacks run in the GUI thread right after the request (the widget detaches
    from its soon-deleted labels and waits for the thread).
    """

    def __init__(self, func, make_job: Callable):
        self.cancel_requested = threading.Event()
        self.stopped = threading.Event()  # set when the thread has finished, cleanup included
        self.when_quit: list[Callable[[], None]] = []
        self.abandoned = False  # set by a widget that no longer takes this worker's signals
        super().__init__(func, make_job, self.cancel_requested)

    def cancel(self) -> None:
        self.cancel_requested.set()

    def quit(self) -> None:
        self.cancel_requested.set()
        for callback in list(self.when_quit):
            callback()

    def run(self) -> None:
        try:
            super().run()
        except RuntimeError:
            # a job that outlived the viewer's close (it stops at its next event) finds its
            # signals deleted with the window; nobody listens any more
            if not self.abandoned:
                raise
        finally:
            self.stopped.set()


def create_job_worker(title: str, make_job: Callable) -> JobWorker:
    """A worker for ``make_job()`` made through napari, which registers it with the current
    viewer's window: closing the window while it runs asks first, then quits it."""
    from napari.qt.threading import create_worker

    function = _Titled(_drive)
    function.title = title
    # errors reach only the widget's handler (it shows the core's one-line message)
    return create_worker(function, make_job, _worker_class=JobWorker, _ignore_errors=True, _start_thread=False)
