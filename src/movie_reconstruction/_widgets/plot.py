"""The dock plot: per-frame correlation and population activity of the selected trial, a
clicked neuron's trace, and a cursor that follows napari's time slider."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from . import _layers


class ReconstructionPlot(QWidget):
    """Shows the trial of the active (or first) reconstruction layer; click a ROI to see its trace."""

    def __init__(self, napari_viewer):
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.figure = Figure(figsize=(5, 5.5), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(460)
        self.canvas.setMinimumWidth(380)
        self.axes = self.figure.subplots(3, 1)
        self.caption = QLabel("Run a reconstruction, or click a ROI, to see plots here.")
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.canvas)
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
        corr_ax, pop_ax, trace_ax = self.axes
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
                f"Trial {meta.get('trial_id')} ({meta.get('tier')}): per-frame correlation of reconstruction and "
                "stimulus inside the evaluation mask (first second not evaluated), and the recorded population "
                "activity (mean response over neurons). The red line follows the time slider."
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
        self._move_cursor()

    def cursor_time(self) -> float:
        """The time slider's position in seconds (world coordinates of the first axis)."""
        return float(self.viewer.dims.point[0]) if self.viewer.dims.ndim >= 3 else 0.0

    def _move_cursor(self, event=None) -> None:
        t = self.cursor_time()
        for line in self._cursors:
            line.set_xdata([t, t])
        self.canvas.draw_idle()
