"""What Run all shows while it works, read from the results folder as stages finish: the field
of view (mean image and ROIs) once extraction has written it, the validation correlation of each
model per epoch while training, and where the live reconstruction preview sits."""

from __future__ import annotations

from types import SimpleNamespace

from . import _layers
from ._common import add_or_replace

MAX_EPOCHS_SHOWN = 12  # the newest epochs per model: the readout stays a few lines


def show_extraction(viewer, folder) -> list:
    """The run's mean image and ROIs as the results view names them (so the final view replaces
    them), shown from x = 0 while the run goes on; the live preview sits left of them."""
    from ..results import ResultsFolder

    rois = ResultsFolder.open(folder).read_rois()
    planes = []
    for plane, arrays in sorted(rois.items()):
        labels = arrays["labels"]
        planes.append(SimpleNamespace(
            plane=plane, mean_image=arrays["mean_image"], labels=lambda labels=labels: labels,
            n_cells=int(labels.max()) if labels.size else 0, frame_shape=labels.shape,
            spks=[], F=[], frame_rate=0.0, roi_index=[], cell_probability=[], source=str(folder),
        ))
    layers = []
    for data, meta, layer_type in _layers.fov_layers(planes, context=True):
        meta["visible"] = True  # hidden beside a finished results view; mid-run it is all there is to see
        layers.append(add_or_replace(viewer, (data, meta, layer_type)))
    return layers


def preview_translate(frame_shape) -> tuple[float, float, float]:
    """Where the live preview sits: left of the field of view shown from x = 0."""
    return 0.0, 0.0, -float(frame_shape[-1] + _layers.GAP * 4)


class TrainingReadout:
    """Validation r per epoch per model, from the training stage's progress events."""

    def __init__(self):
        self.curves: dict[int, list[tuple[int, float]]] = {}
        self.members = 0
        self.best: dict[int, float] = {}
        self.kind = "model"  # "snapshot" while a snapshot run makes the members

    def add(self, event) -> bool:
        """Take one progress event; True when it carried a validation correlation."""
        metrics, where = event.metrics, event.context
        if "val_corr" not in metrics or "member" not in where or "epoch" not in metrics:
            return False
        member = int(where["member"])
        self.members = max(self.members, int(where.get("members", member + 1)))
        self.kind = "snapshot" if where.get("snapshot") else "model"
        curve = self.curves.setdefault(member, [])
        epoch = int(metrics["epoch"])
        curve[:] = [point for point in curve if point[0] != epoch] + [(epoch, float(metrics["val_corr"]))]
        if "best_val_corr" in metrics:
            self.best[member] = float(metrics["best_val_corr"])
        return True

    def text(self) -> str:
        lines = ["validation r per epoch:"]
        for member in sorted(self.curves):
            points = self.curves[member][-MAX_EPOCHS_SHOWN:]
            values = " ".join(f"{epoch}:{r:.2f}" for epoch, r in points)
            best = f" (best {self.best[member]:.3f})" if member in self.best else ""
            lines.append(f"{self.kind} {member + 1}/{self.members}: {values}{best}")
        return "\n".join(lines) if self.curves else ""
