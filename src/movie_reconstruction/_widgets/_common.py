"""Shared machinery of the widgets: run a core job off the GUI thread with a napari progress
bar and a working Cancel, report core errors as notifications, and put layers in the viewer."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from magicgui.widgets import Label, PushButton

from ..errors import InputError
from ..progress import Progress

log = logging.getLogger("movie_reconstruction.napari")
PLUGIN = "napari-movie-reconstruction"
PLOT_WIDGET = "Reconstruction plots"


class Cancelled:
    """Returned by a job's worker when the user cancelled it."""


CANCELLED = Cancelled()


def _drive(make_job: Callable, cancel: threading.Event):
    """Run in the worker thread: create the core job, pass its events on, stop when cancelled.

    Cancelling closes the core generator in this same thread, which is how the core's jobs
    are cancelled (they clean up in their ``finally`` blocks).
    """
    job = make_job()
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
            yield event
    finally:
        job.close()


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


class JobRunner:
    """Runs one core job at a time for a widget: Run/Cancel buttons, a status line, a napari progress bar."""

    def __init__(self, title: str, run_button: PushButton, cancel_button: PushButton, status: Label):
        self.title = title
        self.run_button, self.cancel_button, self.status = run_button, cancel_button, status
        self.worker = None
        self._cancel = threading.Event()
        self._bar = None
        self._step = 0
        cancel_button.enabled = False
        cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(
        self,
        make_job: Callable,
        on_result: Callable,
        on_event: Callable[[Progress], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ):
        """Start ``make_job()`` (called in the worker thread) and route its events and result."""
        from napari.utils import progress
        from superqt.utils import GeneratorWorker

        if self.running:
            return None
        keep_triton_out_without_cuda()
        self._cancel = threading.Event()
        self._step = 0
        self._bar = progress(total=0, desc=self.title)
        # superqt's worker (not napari's create_worker) so that an error reaches only our
        # handler, which shows the core's message instead of a traceback.
        worker = GeneratorWorker(_drive, make_job, self._cancel)

        ended = []  # a late progress event must not overwrite the final status

        def event(ev):
            if ended or not isinstance(ev, Progress):
                return
            # the status line first: napari's progress bar may process pending Qt events while it
            # updates, which can deliver this job's result (and its final status) in the middle
            self.status.value = _status_text(ev)
            self._update_bar(ev)
            if ended:
                return
            if on_event is not None:
                try:
                    on_event(ev)
                except Exception as exc:  # a display problem must not kill the job
                    log.exception("updating the display failed: %s", exc)

        def returned(value):
            ended.append(True)
            if value is CANCELLED:
                self.status.value = f"{self.title}: cancelled"
                if on_cancelled is not None:
                    on_cancelled()
                return
            try:
                on_result(value)
            except Exception as exc:
                notify_error(exc, self.title)
                self.status.value = f"{self.title}: failed ({error_message(exc, self.title)})"

        def errored(exc):
            ended.append(True)
            notify_error(exc, self.title)
            self.status.value = f"{self.title}: failed ({error_message(exc, self.title)})"

        worker.yielded.connect(event)
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(self._finished)
        self.worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"{self.title}: starting…"
        worker.start()
        return worker

    def _update_bar(self, ev: Progress) -> None:
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
        description = f"{self.title}: {ev.stage}"
        if ev.message:
            description += f" ({ev.message})"
        bar.set_description(description)

    def cancel(self, *_):
        if self.worker is not None:
            self._cancel.set()
            self.status.value = f"{self.title}: cancelling…"

    def _finished(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False


def _status_text(ev: Progress) -> str:
    text = f"{ev.stage}"
    if ev.total:
        text += f" {ev.step}/{ev.total}"
    if ev.message:
        text += f" · {ev.message}"
    return text


def job_buttons(run_text: str) -> tuple[PushButton, PushButton, Label]:
    return PushButton(text=run_text), PushButton(text="Cancel"), Label(value="")


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
