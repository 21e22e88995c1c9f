"""The results folder: everything one run produced, written so that it can be reopened
without recomputing anything (by ``movie-recon report``, ``movie-recon info`` and the napari
reader).

Layout::

    provenance.json                 inputs with SHA-256 hashes, versions, seeds, settings,
                                    device and per-stage timings (seconds summed over runs,
                                    updated after every stage)
    session/                        the simulated session (demo runs only)
    extraction/suite2p/             suite2p's output (extract stage)
    rois.npz                        per plane: mean image and ROI label image (plane{p}_mean,
                                    plane{p}_labels), for the ROI map
    recording/                      the aligned recording, Sensorium 2023 layout (build stage)
    models/model_{k}/               encoder checkpoints (safetensors + JSON, with training history)
    mask.safetensors                the transparency mask the reconstructions used
    reconstructions/trial_{id}/     stimulus.tif and reconstruction.tif ((T, H, W) float32 grey
                                    levels, ImageJ hyperstacks), member_movies.npy and trial.json
                                    (scores, per-frame correlation, losses, settings identity)
    metrics.csv, metrics.json       one row per reconstructed trial, plus the summary and the
                                    hashes of the trial.json files they came from ("sources")
    controls.json, controls.csv     the controls table and the neuron-count curve, with their
                                    sources; "stale" lists trials reconstructed again since
    report.html                     the self-contained report
    .lock                           while a run writes here: its pid, host, start and command
                                    (movie_reconstruction._lock)

Every file is written atomically (``movie_reconstruction._atomic``); a trial folder appears
complete or not at all, which is what lets a re-run resume: a trial whose ``trial.json``
exists and was made with the same models and settings is not redone. Summaries are derived
from the trial files and checked against them by every reader, so an interruption between a
trial and its summary never shows a score that disagrees with the trial.

The package's modules: ``layout`` (file names, JSON reading and writing), ``provenance``
(``provenance.json``, input hashes, versions), ``trials`` (the trial folders), ``summaries``
(metrics and controls), ``folder`` (:class:`ResultsFolder`: creating, locking, paths, members,
ROIs) and ``loading`` (:func:`load_results`).
"""

from .folder import ResultsFolder
from .layout import (
    CONTROL_MOVIES,
    CONTROLS_CSV,
    CONTROLS_JSON,
    EXTRACTION,
    FORMAT,
    FORMAT_VERSION,
    MASK,
    METRICS_CSV,
    METRICS_JSON,
    MODELS,
    PROVENANCE,
    RECONSTRUCTIONS,
    RECORDING,
    REPORT,
    ROIS,
    SESSION,
    TRIAL_JSON,
    read_json,
    write_json,
)
from .loading import Results, load_results
from .provenance import describe_inputs, file_sha256, identity_hash, software_versions
from .summaries import metrics_from_trials
from .trials import TrialResult

__all__ = [
    "CONTROLS_CSV",
    "CONTROLS_JSON",
    "CONTROL_MOVIES",
    "EXTRACTION",
    "FORMAT",
    "FORMAT_VERSION",
    "MASK",
    "METRICS_CSV",
    "METRICS_JSON",
    "MODELS",
    "PROVENANCE",
    "RECONSTRUCTIONS",
    "RECORDING",
    "REPORT",
    "ROIS",
    "Results",
    "ResultsFolder",
    "SESSION",
    "TRIAL_JSON",
    "TrialResult",
    "describe_inputs",
    "file_sha256",
    "identity_hash",
    "load_results",
    "metrics_from_trials",
    "read_json",
    "software_versions",
    "write_json",
]
