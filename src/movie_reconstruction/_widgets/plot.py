"""The plots panel: the controls' verdict table and neuron-count curve of the results, the
per-frame correlation and population activity of the selected trial, a clicked neuron's
trace, and a cursor that follows napari's time slider; buttons for the difference view,
saving the figure and opening the HTML report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView, QCheckBox, QHBoxLayout, QHeaderView, QLabel, QPushButton, QScrollArea, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from . import _grid, _layers, _verdict
from ._display import difference_view_shown, show_difference_view

log = logging.getLogger("movie_reconstruction.napari")
FIGURES = "figures"  # inside the results folder, where "save figure" writes


class ReconstructionPlot(QWidget):
    """Shows the trial of the active (or first) reconstruction layer; click a ROI to see its trace."""

    def __init__(self, napari_viewer):
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.figure = Figure(figsize=(5, 7), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(560)
        self.canvas.setMinimumWidth(380)
        # frame correlation, population activity, a ROI's trace, the neuron-count curve
        self.axes = self.figure.subplots(4, 1)
        self.caption = QLabel("Run a reconstruction, or click a ROI, to see plots here.")
        self.caption.setWordWrap(True)
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.table = QTableWidget(0, len(_verdict.HEADER))
        self.table.setHorizontalHeaderLabels(list(_verdict.HEADER))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.difference_box = QCheckBox("difference view")
        self.difference_box.setToolTip(_grid.DIFFERENCE_LEGEND + " (reconstruction minus stimulus, beside each pair)")
        self.difference_box.toggled.connect(self._toggle_difference)
        self.save_button = QPushButton("save figure")
        self.save_button.clicked.connect(lambda *_: self.save_figure())
        self.report_button = QPushButton("open report")
        self.report_button.clicked.connect(lambda *_: self.open_report())
        buttons = QHBoxLayout()
        for widget in (self.difference_box, self.save_button, self.report_button):
            buttons.addWidget(widget)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self.verdict)
        layout.addWidget(self.table)
        layout.addWidget(self.caption)
        layout.addWidget(self.canvas)
        scroll = QScrollArea()  # a short dock scrolls instead of squashing the plots
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.addLayout(buttons)
        outer.addWidget(scroll)
        self.trial_layer = None
        self.neuron: tuple[object, int] | None = None  # (ROI layer, label)
        self._cursors = []
        self._hooked: set[int] = set()

        self.viewer.dims.events.current_step.connect(self._move_cursor)
        self.viewer.layers.selection.events.active.connect(self._selection_changed)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self._hook_roi_layers()
        self.refresh()

    # ------------------------------------------------------------------ state
    def _trial_layers(self):
        return [layer for layer in self.viewer.layers if layer.metadata.get("kind") == _layers.RECONSTRUCTION]

    def _selection_changed(self, event=None):
        active = self.viewer.layers.selection.active
        if active is not None and active.metadata.get("kind") in (_layers.STIMULUS, _layers.RECONSTRUCTION):
            self.refresh()

    def _layers_changed(self, event=None):
        self._hook_roi_layers()
        self.refresh()

    def _hook_roi_layers(self):
        for layer in self.viewer.layers:
            if layer.metadata.get("kind") == _layers.ROIS and id(layer) not in self._hooked:
                layer.mouse_drag_callbacks.append(self._roi_clicked)
                self._hooked.add(id(layer))

    def _roi_clicked(self, layer, event):
        value = layer.get_value(event.position, world=True)
        if value is None:
            return
        label = int(np.asarray(value).ravel()[0]) if np.ndim(value) else int(value)
        if label > 0:
            self.show_neuron(layer, label)

    def show_neuron(self, layer, label: int) -> None:
        """Plot ROI ``label`` (row ``label - 1`` of the plane's traces)."""
        self.neuron = (layer, int(label))
        layer.selected_label = int(label)
        self.refresh()

    def current_trial_layer(self):
        """The reconstruction layer of the active trial (the active layer's trial, else the first)."""
        active = self.viewer.layers.selection.active
        candidates = self._trial_layers()
        if active is not None and active.metadata.get("kind") in (_layers.STIMULUS, _layers.RECONSTRUCTION):
            same = [c for c in candidates if c.metadata.get("trial_id") == active.metadata.get("trial_id")]
            if same:
                return same[0]
        return candidates[0] if candidates else None

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        corr_ax, pop_ax, trace_ax, curve_ax = self.axes
        for ax in self.axes:
            ax.clear()
        self._cursors = []
        layer = self.current_trial_layer()
        self.trial_layer = layer
        if layer is not None:
            meta = layer.metadata
            rate = float(meta.get("frame_rate") or 1.0)
            metrics = meta.get("metrics") or {}
            corr = meta.get("frame_correlation")
            pop = meta.get("population_activity")
            if corr is not None:
                t = np.arange(len(corr)) / rate
                corr_ax.plot(t, corr, color="tab:blue", lw=1)
                corr_ax.axhline(0, color="0.7", lw=0.5)
                overall = metrics.get("correlation")
                if overall is not None and np.isfinite(overall):
                    corr_ax.axhline(overall, color="tab:blue", ls=":", lw=1)
            corr_ax.set_ylabel("frame corr.")
            title = f"trial {meta.get('trial_id')}"
            if metrics.get("correlation") is not None:
                title += f"  ·  masked r = {metrics['correlation']:.2f}"
            corr_ax.set_title(title, fontsize=9)
            if pop is not None:
                t = np.arange(len(pop)) / rate
                pop_ax.plot(t, pop, color="tab:orange", lw=1)
            pop_ax.set_ylabel("population\nactivity")
            pop_ax.set_xlabel("time in trial (s)")
            for ax in (corr_ax, pop_ax):
                self._cursors.append(ax.axvline(0, color="tab:red", lw=1))
            self.caption.setText(
                f"Trial {meta.get('trial_id')} ({meta.get('tier')}, {_layers.ensemble_label(meta.get('n_models', 1))}): "
                "per-frame r inside the mask (first second not scored) and the population activity (mean over "
                "neurons); the red line follows the time slider."
            )
        if self.neuron is not None and self.neuron[0] in self.viewer.layers:
            roi_layer, label = self.neuron
            spks = roi_layer.metadata.get("spks")
            rate = float(roi_layer.metadata.get("frame_rate") or 1.0)
            if spks is not None and 0 < label <= len(spks):
                trace = np.asarray(spks[label - 1])
                trace_ax.plot(np.arange(trace.size) / rate, trace, color="tab:green", lw=0.8)
                trace_ax.set_title(f"{roi_layer.name}: ROI {label} (deconvolved)", fontsize=9)
                trace_ax.set_xlabel("session time (s)")
        else:
            trace_ax.set_title("click a ROI to see its trace", fontsize=9)
        controls = layer.metadata.get("controls") if layer is not None else None
        self._show_verdict(controls)
        self._plot_neuron_curve(curve_ax, controls)
        self.report_button.setEnabled(self.report_path() is not None)
        self.difference_box.blockSignals(True)
        self.difference_box.setChecked(difference_view_shown(self.viewer))
        self.difference_box.blockSignals(False)
        self._move_cursor()

    def _show_verdict(self, controls) -> None:
        rows = _verdict.verdict_rows(controls)
        self.verdict.setText(_verdict.overall_text(controls, limit=160))
        self.verdict.setToolTip(_verdict.overall_text(controls))
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate(row):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.setVisible(bool(rows))
        header = self.table.horizontalHeader().height()
        self.table.setFixedHeight(header + sum(self.table.rowHeight(i) for i in range(len(rows))) + 4)

    def _plot_neuron_curve(self, ax, controls) -> None:
        neurons, mean_r = _verdict.neuron_curve(controls)
        if not neurons:
            ax.set_title("no neuron-count curve in these results", fontsize=9)
            return
        ax.plot(neurons, mean_r, "o-", color="tab:purple", lw=1, ms=4)
        ax.set_xlabel("neurons used")
        ax.set_ylabel("mean r")
        ax.set_title("neuron-count curve (masked r with a random subset)", fontsize=9)

    # ------------------------------------------------------------------ actions
    def results_folder(self) -> Path | None:
        layer = self.trial_layer
        folder = layer.metadata.get("results_folder") if layer is not None else None
        return Path(folder) if folder else None

    def report_path(self) -> Path | None:
        layer = self.trial_layer
        report = layer.metadata.get("report") if layer is not None else None
        folder = self.results_folder()
        candidates = [Path(report)] if report else []
        if folder is not None:
            candidates.append(folder / "report.html")
        return next((path for path in candidates if path.is_file()), None)

    def open_report(self) -> bool:
        """Open the results' HTML report in the system's browser."""
        import webbrowser

        report = self.report_path()
        if report is None:
            self.caption.setText("No report.html in these results (movie-recon report writes one).")
            return False
        return bool(webbrowser.open(report.resolve().as_uri()))

    def save_figure(self, path: str | Path | None = None) -> Path | None:
        """Write the plots as a PNG: to ``path``, else into the results folder's ``figures/``,
        else where the user picks. Returns where it went (None when the user cancelled)."""
        import io

        from .._atomic import write_bytes

        if path is None:
            path = self._default_figure_path()
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            chosen, _filter = QFileDialog.getSaveFileName(self, "Save the plots", "plots.png", "PNG (*.png)")
            if not chosen:
                return None
            path = chosen
        path = Path(path)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=150)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, buffer.getvalue())
        self.caption.setText(f"Saved the plots to {path}")
        return path

    def _default_figure_path(self) -> Path | None:
        folder = self.results_folder()
        if folder is None or not folder.is_dir():
            return None
        trial = self.trial_layer.metadata.get("trial_id")
        return folder / FIGURES / f"plots-trial-{trial}.png"

    def _toggle_difference(self, checked: bool) -> None:
        show_difference_view(self.viewer, bool(checked))

    def cursor_time(self) -> float:
        """The time slider's position in seconds (world coordinates of the first axis)."""
        return float(self.viewer.dims.point[0]) if self.viewer.dims.ndim >= 3 else 0.0

    def _move_cursor(self, event=None) -> None:
        t = self.cursor_time()
        for line in self._cursors:
            line.set_xdata([t, t])
        self.canvas.draw_idle()
