"""The napari widgets: thin magicgui front ends over the same core functions as the CLI.

Each widget runs its core job (a generator of ``Progress`` events) in a worker thread with a
napari progress bar and a Cancel button; results appear as layers. The widgets of one viewer
share their results (traces -> recording -> models -> reconstruction) through ``_session``.

The widget classes are imported on first use, so the readers and the writer can use
``_widgets._layers`` (plain NumPy) without importing Qt.
"""

from importlib import import_module

_WHERE = {
    "ExtractTracesWidget": ".extract",
    "BuildRecordingWidget": ".recording",
    "TrainEncoderWidget": ".train",
    "ReconstructWidget": ".reconstruct",
    "RunAllWidget": ".run_all",
    "show_results_folder": ".run_all",
    "ReconstructionPlot": ".plot",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
