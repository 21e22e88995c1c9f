"""Shared machinery of the widgets: run a core job off the GUI thread with a napari progress
bar, a working Cancel and a short status line, report core errors as notifications, and put
layers in the viewer."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from magicgui.widgets import Label, PushButton

from ..errors import InputError
from ..progress import Progress
from ._job_status import JobLog, RemainingTime, status_line
from ._worker import CANCELLED, Failed, create_job_worker

log = logging.getLogger("movie_reconstruction.napari")
PLUGIN = "napari-movie-reconstruction"
PLOT_WIDGET = "Reconstruction plots"


def keep_triton_out_without_cuda() -> None:
    """On machines without CUDA, make ``import triton`` fail before torch first tries it.

    Linux torch wheels ship triton, which bundles its own LLVM. Loading it after a Mesa
    OpenGL driver (llvmpipe, radeonsi: also LLVM) has been loaded by napari's canvas crashes
    the process (segfault); torch imports triton lazily on the first optimiser step. triton
    only compiles GPU kernels, so without CUDA it has nothing to do and is kept out.
    """
    if "triton" in sys.modules or "torch._dynamo" in sys.modules:
        return
    import torch

    if not torch.cuda.is_available():
        sys.modules["triton"] = None  # an ImportError for torch's "is triton installed?" probe


def error_message(exc: BaseException, what: str) -> str:
    """The core's own message for bad input; a one-line summary for anything else."""
    if isinstance(exc, InputError):
        return str(exc)
    return f"{what} failed: {type(exc).__name__}: {exc}"


def notify_error(exc: BaseException, what: str) -> None:
    from napari.utils.notifications import show_error

    if not isinstance(exc, InputError):
        log.error("%s failed", what, exc_info=(type(exc), exc, exc.__traceback__))
    show_error(error_message(exc, what))


CLOSE_WAIT_SECONDS = 10.0  # how long closing the viewer waits for a job to reach its next event


def wrapping_label(value: str = "", **kwargs) -> Label:
    """A label that wraps its text to the dock's width instead of widening the dock.

    magicgui's Label asks for a fixed size (its text's width), so a long status line or path
    widens the whole dock, and it never shrinks back. This one ignores its text's width and
    wraps; a path longer than the dock still breaks at its slashes.
    """
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value=value, **kwargs)
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.native.setMinimumWidth(0)
    return label


class JobRunner:
    """Runs one core job at a time for a widget: Run/Cancel buttons, a one-line status (stage,
    unit, percentage, time left), a log of the job's messages, and a napari progress bar with
    its own Cancel. Closing the viewer while a job runs cancels it and waits for its thread."""

    def __init__(self, title: str, run_button: PushButton, cancel_button: PushButton, status: Label,
                 on_log: Callable[[], None] | None = None):
        self.title = title
        self.run_button, self.cancel_button, self.status = run_button, cancel_button, status
        self.worker = None
        self.log = JobLog()
        self.on_log = on_log  # called after a line joins ``log`` (the widget shows it)
        self._bar = None
        cancel_button.enabled = False
        cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        return self.worker is not None

    # long: the worker's five signal handlers are closures over this run's callbacks and state
    def start(
        self,
        make_job: Callable,
        on_result: Callable,
        on_event: Callable[[Progress], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ):
        """Start ``make_job()`` (called in the worker thread) and route its events and result."""
        if self.running:
            return None
        keep_triton_out_without_cuda()
        self.log.clear()
        remaining = RemainingTime()
        worker = create_job_worker(self.title, make_job)
        self._bar = _cancelable_bar(self.title, self.cancel)
        ended = []  # a late progress event must not overwrite the final status

        def event(ev):
            if ended or worker.abandoned or not isinstance(ev, Progress):
                return
            # the status line first: napari's progress bar may process pending Qt events while it
            # updates, which can deliver this job's result (and its final status) in the middle
            self.status.value = line = status_line(ev, remaining.update(ev))
            self._add_to_log(ev.stage, ev.message)
            self._update_bar(ev, line)
            if ended:
                return
            if on_event is not None:
                try:
                    on_event(ev)
                except Exception as exc:  # a display problem must not kill the job
                    log.exception("updating the display failed: %s", exc)

        def returned(value):
            if worker.abandoned:
                return
            ended.append(True)
            if isinstance(value, Failed):
                return errored(value.error)
            if value is CANCELLED:
                self.status.value = f"{self.title}: cancelled"
                if on_cancelled is not None:
                    on_cancelled()
                return
            try:
                on_result(value)
            except Exception as exc:
                errored(exc)

        def errored(exc):
            if worker.abandoned:
                return
            ended.append(True)
            notify_error(exc, self.title)
            self._add_to_log("failed", error_message(exc, self.title))
            self.status.value = f"{self.title}: failed ({error_message(exc, self.title)})"

        def warned(args):
            if not worker.abandoned:
                _relay_warning(args, self._add_to_log)

        worker.yielded.connect(event)
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.warned.connect(warned)
        worker.finished.connect(lambda: None if worker.abandoned else self._finished())
        # napari's window quits every worker it ever listed, finished ones too: act for this one only
        worker.when_quit.append(lambda: self._abandon(worker))
        self.worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"{self.title}: starting…"
        worker.start()
        return worker

    def _add_to_log(self, stage: str, message: str) -> None:
        if self.log.add(stage, message) and self.on_log is not None:
            self.on_log()

    def _update_bar(self, ev: Progress, line: str) -> None:
        bar = self._bar
        if bar is None:
            return
        total = int(ev.total or 0)
        if bar.total != total:
            bar.total = total
        if total:
            delta = int(ev.step) - int(bar.n)
            if delta:
                bar.update(delta)
        bar.set_description(f"{self.title}: {line}")

    def cancel(self, *_):
        """Stop the job at its next progress event; the finished stages stay (without waiting)."""
        if self.worker is not None:
            self.worker.cancel()
            self.status.value = f"{self.title}: cancelling…"

    def _abandon(self, worker):
        """The viewer is closing (napari's window quits the workers it lists, after asking):
        cancel, stop touching the widgets (Qt deletes them next), and wait a bounded time for
        the job to clean up and its thread to end."""
        current = self.worker
        if current is None or current.abandoned or worker is not current:
            return
        worker, self.worker = current, None
        worker.abandoned = True
        worker.cancel()
        self._close_bar()
        if not worker.stopped.wait(CLOSE_WAIT_SECONDS):
            log.warning("%s is still finishing its current step after %.0f s; it stops at its next "
                        "progress event", self.title, CLOSE_WAIT_SECONDS)

    def _close_bar(self) -> None:
        if self._bar is not None:
            try:
                self._bar.close()
            except RuntimeError:  # its activity-dock widget is already gone with the window
                pass
            self._bar = None

    def _finished(self):
        self._close_bar()
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False


def _cancelable_bar(title: str, cancel: Callable[[], None]):
    """napari's progress bar (the activity dock) with a Cancel button that cancels the job.

    napari's cancelable progress only acts on a cancel while it iterates; this job is not
    iterated by the bar, so its Cancel calls the runner's directly.
    """
    from napari.utils import cancelable_progress

    class _JobProgress(cancelable_progress):
        def cancel(self) -> None:
            super().cancel()
            cancel()

    return _JobProgress(total=0, desc=title)


def _relay_warning(args: tuple, add_to_log: Callable[[str, str], None]) -> None:
    """A warning raised in the worker thread: into the log; the project's own also as a notification."""
    from ..errors import RunWarning

    message, category = args[0], args[1]
    add_to_log("warning", str(message))
    if isinstance(category, type) and issubclass(category, RunWarning):
        from napari.utils.notifications import show_warning

        show_warning(str(message))


def job_buttons(run_text: str) -> tuple[PushButton, PushButton, Label]:
    return PushButton(text=run_text), PushButton(text="Cancel"), wrapping_label()

def device_summary(preference: str = "auto") -> str:
    """The device a job will use, as the widgets show it (torch imported on first use)."""
    try:
        from ..device import describe, pick_device

        return describe(pick_device(preference))
    except Exception as exc:  # noqa: BLE001 - shown to the user as text
        return f"unavailable ({exc})"


def add_or_replace(viewer, layer_tuple) -> object:
    """Add a layer from a ``(data, kwargs, type)`` tuple, reusing a layer of the same name."""
    from napari.layers import Layer

    data, kwargs, layer_type = layer_tuple
    name = kwargs.get("name")
    if name in viewer.layers:
        existing = viewer.layers[name]
        if type(existing).__name__.lower() == layer_type:
            existing.data = data
            for key in ("metadata", "scale", "translate", "contrast_limits"):
                if key in kwargs:
                    setattr(existing, key, kwargs[key])
            return existing
        viewer.layers.remove(existing)
    layer = Layer.create(data, kwargs, layer_type)
    viewer.add_layer(layer)
    return layer


def show_plot_dock(viewer):
    """Open (or find) the plugin's plot dock through napari's plugin machinery; None without a window."""
    window = getattr(viewer, "window", None)
    if window is None or not hasattr(window, "add_plugin_dock_widget"):
        return None
    try:
        _dock, widget = window.add_plugin_dock_widget(PLUGIN, PLOT_WIDGET)
    except Exception as exc:  # noqa: BLE001 - the plot is a convenience, never a blocker
        log.warning("could not open the plot dock: %s", exc)
        return None
    return widget
