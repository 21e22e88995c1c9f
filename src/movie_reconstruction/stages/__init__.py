"""The stage API: one job generator per stage, called alike by the command line, the napari
widgets, Run all and (per task) the Dask workers.

Each stage takes a :class:`~movie_reconstruction.results.ResultsFolder` (where it reads its
inputs and writes its outputs, holding the folder's writer lock), typed
:class:`~movie_reconstruction.settings.PipelineSettings` and, where a front end has them in
memory, its inputs (traces, an in-memory manifest); it yields
:class:`~movie_reconstruction.progress.Progress` with structured ``context`` and returns a
typed result::

    simulate_stage      -> SimulatedSession          (demo only)
    extract_stage       -> list[Traces]              suite2p, or an existing suite2p folder
    build_stage         -> Recording                 aligned, saved as results/recording
    train_stage         -> list[Path]                ensemble checkpoints + transparency mask
    reconstruct_stage   -> ReconstructionSummary     chosen trials, resumable, per-trial files
    controls_stage      -> dict                      controls table + neuron-count curve (+ control movies)
    evaluate_stage      -> Evaluation                verdicts, identification, resolution, reliability map
    report_stage        -> Path                      report.html
"""

from ._base import ReconstructionSummary
from .controls import controls_stage, evaluate_stage, report_stage
from .prepare import build_stage, extract_stage, simulate_stage
from .reconstruct import reconstruct_stage
from .train import train_stage

__all__ = [
    "ReconstructionSummary", "build_stage", "controls_stage", "evaluate_stage", "extract_stage", "reconstruct_stage",
    "report_stage", "simulate_stage", "train_stage",
]
