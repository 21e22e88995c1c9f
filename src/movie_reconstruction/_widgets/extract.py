"""Extract traces: suite2p on a raw stack (a layer, or TIFF/HDF5 files or a folder)."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label

from ._common import JobRunner, job_buttons
from ._display import show_fov
from ._session import session_for

FROM_FILES = "a TIFF/HDF5 file"
FROM_FOLDER = "a folder of TIFF/HDF5 files"


class ExtractTracesWidget(Container):
    """Run suite2p (registration, detection, extraction, deconvolution) and show mean image + ROIs."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.source = ComboBox(label="raw stack", choices=self._source_choices)
        self.path = FileEdit(label="file", mode="r", filter="*.tif *.tiff *.h5 *.hdf5")
        self.output = FileEdit(label="output folder", mode="d")
        self.fs = FloatSpinBox(label="volume rate (Hz; 0 = from the file's metadata)", value=0.0, min=0.0, max=1000.0,
                               step=0.5, tooltip="0: read it from the ScanImage metadata")
        self.tau = FloatSpinBox(label="indicator tau (s)", value=1.0, min=0.05, max=5.0, step=0.05,
                                tooltip="decay time: ~0.7 for GCaMP6f, 1.0-1.5 for GCaMP6s")
        self.diameter = FloatSpinBox(label="cell diameter (px)", value=12.0, min=2.0, max=100.0, step=1.0)
        self.threshold = FloatSpinBox(label="detection threshold", value=1.0, min=0.1, max=10.0, step=0.1,
                                      tooltip="suite2p's threshold_scaling: higher finds fewer ROIs")
        self.cell_threshold = FloatSpinBox(label="cell probability ≥", value=0.5, min=0.0, max=1.0, step=0.05)
        self.registration = CheckBox(label="register (motion correction)", value=True)
        self.small_fov = CheckBox(label="small field of view (<100 px)", value=False,
                                  tooltip="rigid registration and a smaller neuropil ring, for tiny frames")
        self.run_button, self.cancel_button, self.status = job_buttons("Extract traces")
        self.runner = JobRunner("Extract traces", self.run_button, self.cancel_button, self.status)
        self.extend([
            Label(value="suite2p on a raw two-photon stack"),
            self.source, self.path, self.output, self.fs, self.tau, self.diameter, self.threshold,
            self.cell_threshold, self.registration, self.small_fov,
            self.run_button, self.cancel_button, self.status,
        ])
        self.source.changed.connect(self._source_changed)
        self.run_button.changed.connect(self.run)
        napari_viewer.layers.events.inserted.connect(self.source.reset_choices)
        napari_viewer.layers.events.removed.connect(self.source.reset_choices)
        self._source_changed()

    def _source_choices(self, _widget=None):
        from napari.layers import Image

        layers = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and layer.ndim == 3]
        return [FROM_FILES, FROM_FOLDER, *layers]

    def _source_changed(self, *_):
        from_disk = self.source.value in (FROM_FILES, FROM_FOLDER)
        self.path.visible = from_disk
        if from_disk:  # the picker's button chooses a file or a folder to match
            folder = self.source.value == FROM_FOLDER
            self.path.mode, self.path.label = ("d", "folder") if folder else ("r", "file")

    def job_kwargs(self) -> dict:
        from ..extract import small_fov_overrides

        kwargs = dict(
            fs=self.fs.value or None,
            tau=self.tau.value,
            diameter=self.diameter.value,
            threshold_scaling=self.threshold.value,
            do_registration=self.registration.value,
            cell_threshold=self.cell_threshold.value,
        )
        if self.small_fov.value:
            kwargs["settings"] = small_fov_overrides(diameter=self.diameter.value)
        return kwargs

    def run(self, *_):
        from ..errors import InputError
        from ..extract import extract_traces

        output = Path(self.output.value) if str(self.output.value) not in ("", ".") else None
        if self.source.value in (FROM_FILES, FROM_FOLDER):
            source = Path(self.path.value)
            raw_layer_name = None
        else:
            layer = self.viewer.layers[self.source.value]
            source = layer.data
            raw_layer_name = layer.name
        kwargs = self.job_kwargs()

        def make_job():
            if output is None:
                raise InputError("choose an output folder for suite2p's files")
            if isinstance(source, Path) and str(source) in ("", "."):
                raise InputError("choose a raw stack: a layer, or a TIFF/HDF5 file or folder")
            return extract_traces(source, output, **kwargs)

        def done(traces):
            session = session_for(self.viewer)
            session.set("raw_source", source)
            session.set("traces", traces)
            raws = None
            if raw_layer_name is None:
                raws = _lazy_raw(source, len(traces))
            show_fov(self.viewer, traces, raws)
            cells = ", ".join(f"plane {t.plane}: {t.n_cells} cells" for t in traces)
            self.status.value = f"done: {cells}"

        self.runner.start(make_job, done)


def _lazy_raw(source: Path, n_planes: int):
    """The raw movie of each plane as a lazy dask array (TIFF only; None where not readable)."""
    try:
        from ..io.tiff import read_raw_stack

        stack = read_raw_stack(source, n_planes=n_planes if n_planes > 1 else None)
        return [stack.movie(p) for p in range(stack.n_planes)]
    except Exception:  # noqa: BLE001 - HDF5 or odd layouts: the traces are what matters
        return None
