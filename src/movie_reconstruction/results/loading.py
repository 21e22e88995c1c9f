"""A whole results folder loaded at once, without recomputation (for reports, ``info`` and napari)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .folder import ResultsFolder
from .layout import MODELS, read_json
from .trials import TrialResult, trial_from


@dataclass
class Results:
    """Everything a results folder holds, loaded without recomputation."""

    path: Path
    provenance: dict
    trials: list[TrialResult]
    metrics: dict
    controls: dict | None
    training: list[dict]  # per model: checkpoint path, best epoch, validation correlation, history
    mask: np.ndarray | None
    rois: dict[int, dict[str, np.ndarray]]  # plane -> {"mean_image", "labels"}
    checkpoints: list[Path]
    report: Path | None
    # what a reader must be told: members left out (they cannot be loaded), stale controls
    warnings: list[str] = field(default_factory=list)

    def trial(self, trial_id: int) -> TrialResult:
        for t in self.trials:
            if t.trial_id == int(trial_id):
                return t
        raise KeyError(f"trial {trial_id} is not in {self.path}")


def load_results(path: str | Path) -> Results:
    """Everything in a results folder, without recomputation (for reports, ``info`` and napari)."""
    folder = ResultsFolder.open(path)
    trials = [trial_from(folder.trial_dir(tid), meta) for tid, meta in sorted(folder.finished_trials().items())]
    metrics = folder.read_metrics()  # derived from the trial files when metrics.json is behind them
    checkpoints, problems = folder.members()
    warnings = [f"{MODELS}/{path.name} was left out: {problem}" for path, problem in problems.items()]
    controls = folder.read_controls()
    if controls and controls.get("stale"):
        warnings.append(f"the controls were computed from earlier reconstructions of trial(s) {controls['stale']}; "
                        "re-run them before trusting them")
    training = []
    for checkpoint in checkpoints:
        config = read_json(checkpoint / "config.json")
        tm = config.get("training_metrics") or {}
        training.append(
            {
                "checkpoint": checkpoint,
                "best_epoch": tm.get("best_epoch"),
                "best_val_corr": tm.get("best_val_corr"),
                "stopped_because": tm.get("stopped_because"),
                "seconds": tm.get("seconds"),
                "seed": (tm.get("training") or {}).get("seed"),
                "history": tm.get("history", []),
            }
        )
    mask = None
    if folder.mask_path.is_file():
        from safetensors.numpy import load_file

        mask = np.asarray(load_file(str(folder.mask_path))["alpha"], np.float32)
    return Results(
        path=folder.path,
        provenance=folder.provenance(),
        trials=trials,
        metrics=metrics,
        controls=controls,
        training=training,
        mask=mask,
        rois=folder.read_rois(),
        checkpoints=checkpoints,
        report=folder.report_path if folder.report_path.is_file() else None,
        warnings=warnings,
    )
