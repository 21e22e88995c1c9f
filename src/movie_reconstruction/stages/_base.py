"""What every stage shares: the timing record, the results folder's writer lock, the device's
name, and the trials and inputs a reconstruction starts from."""

from __future__ import annotations

import functools
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, RunWarning
from ..losses import DEFAULT_LOSS
from ..progress import Job, Progress, relabel, run
from ..results import ResultsFolder
from ..results_recording import open_recording, recording_path_of
from ..settings import PipelineSettings, reconstruction_config


@dataclass
class ReconstructionSummary:
    trial_ids: list[int]
    resumed: list[int]  # finished before this run, not redone
    failed: list[str]  # one line per failed task
    correlations: dict[int, float]
    seconds: float
    where: str

    @property
    def ok(self) -> bool:
        return not self.failed


def timed(results: ResultsFolder, stage: str, timings: dict | None = None):
    started = time.perf_counter()

    def finish(**record):
        seconds = time.perf_counter() - started
        if timings is not None:
            timings[stage] = seconds
        results.record(stage, seconds=seconds, **record)
        return seconds

    return finish


def writes_results(stage):
    """Run the stage holding the results folder's writer lock (re-entrant: a whole run holds it
    too), so that no other run writes into the folder meanwhile."""

    @functools.wraps(stage)
    def locked(results: ResultsFolder, *args, **kwargs):
        with results.lock():
            return (yield from stage(results, *args, **kwargs))

    return locked


def device_name(device: str | None) -> str:
    from ..device import describe, pick_device

    return describe(pick_device(device))


def ensemble_alpha(results: ResultsFolder) -> np.ndarray:
    """The saved transparency mask of the ensemble (its alpha map)."""
    from ..reconstruct.mask import load_mask

    return load_mask(results.mask_path).alpha


def ensemble_blobs(results: ResultsFolder, recording):
    """Checkpoint blobs of the ensemble, each checked against ``recording`` (neurons, frames, behaviour)."""
    from ..distributed import CheckpointBlob
    from ..model import load_encoder

    checkpoints = results.checkpoints()
    if not checkpoints:
        raise InputError("no trained models here (run `movie-recon train` first)", results.models_dir)
    for path in checkpoints:
        load_encoder(path, recording)  # raises InputError for a checkpoint made for other data
    if not results.mask_path.is_file():  # a folder from before masks were saved
        run(write_ensemble_mask(results, checkpoints))
    return [CheckpointBlob.read(p) for p in checkpoints]


def select_trials(recording, trial_ids) -> list[int]:
    """Positions of the trials to reconstruct: the given ids, or every test trial."""
    if trial_ids is None:
        positions = recording.indices("test").tolist()
        if not positions:
            raise InputError("the recording has no test trials; pass --trials", recording.source)
        return positions
    by_id = {int(t): i for i, t in enumerate(recording.trial_ids)}
    missing = [t for t in trial_ids if int(t) not in by_id]
    if missing:
        raise InputError(f"no trial(s) {missing} in the recording (ids {sorted(by_id)[:5]}...)", recording.source)
    return [by_id[int(t)] for t in trial_ids]


def identity_settings(config) -> dict:
    """The reconstruction settings that identify a result; the default loss is left out, so that
    folders reconstructed before the loss table existed still resume."""
    settings = config.to_dict()
    if settings.get("loss") == DEFAULT_LOSS:
        del settings["loss"]
    return settings


def reconstruction_inputs(results: ResultsFolder, settings: PipelineSettings, recording_path=None):
    """What reconstructions and controls both start from: the recording, the ensemble's
    checkpoints, the mask, the optimiser settings and the chosen trials' positions."""
    recording = open_recording(recording_path_of(results, recording_path))
    blobs = ensemble_blobs(results, recording)
    config = reconstruction_config(settings)
    warn_if_trained_with_another_loss(results, config.loss)
    return recording, blobs, ensemble_alpha(results), config, select_trials(recording, settings.trials)


def warn_if_trained_with_another_loss(results: ResultsFolder, loss: str) -> None:
    """Pixels optimised for another loss than the encoders were fitted with is allowed (a choice),
    but never unnoticed: ``train --loss`` does not carry over to a later ``reconstruct``."""
    trained = set()
    for path in results.checkpoints():
        meta = json.loads((path / "config.json").read_text())
        trained.add(((meta.get("training_metrics") or {}).get("training") or {}).get("loss", DEFAULT_LOSS))
    if trained and trained != {loss}:
        warnings.warn(f"the encoders were trained with the {', '.join(sorted(trained))} loss but the pixels are "
                      f"optimised for {loss}; pass --loss {sorted(trained)[0]} to match", RunWarning, stacklevel=2)


def write_ensemble_mask(results: ResultsFolder, checkpoints: Sequence[Path], method: str = "readout", *,
                        recording=None, device=None) -> Job:
    """The transparency mask of the ensemble (a job): the mean of the members' masks, each
    estimated from its readout positions (``readout``, fast) or learned on training trials
    (``learned``, the paper's; needs ``recording``), or the whole frame (``none``)."""
    from ..model import load_encoder
    from ..reconstruct.mask import TransparencyMask, learn_mask, mask_for_model, save_mask

    models = [load_encoder(p) for p in checkpoints]
    if method == "none":
        mask = TransparencyMask.full(tuple(models[0].frame_shape))
    elif method == "learned":
        if recording is None or len(recording.indices("train")) == 0:
            raise InputError("learning a transparency mask needs the recording's training trials")
        train_trials = [recording.trial(int(i)) for i in recording.indices("train")[:8]]
        alphas = []
        for k, model in enumerate(models):
            learned = yield from relabel(learn_mask(model, train_trials, device=device), f"mask {k + 1}/{len(models)}")
            alphas.append(learned.alpha)
        mask = TransparencyMask(np.mean(alphas, axis=0), method="learned (ensemble mean)", settings={"members": len(alphas)})
    elif method == "readout":
        mask = TransparencyMask(np.mean([mask_for_model(m).alpha for m in models], axis=0),
                                method="readout (ensemble mean)", settings={"members": len(models)})
    else:
        raise InputError(f"unknown mask method {method!r}; choose readout, learned or none")
    save_mask(mask, results.mask_path)
    yield Progress("mask", 1, 1, f"transparency mask: {mask.method}")
