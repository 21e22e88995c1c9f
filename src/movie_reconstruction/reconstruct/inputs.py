"""The inputs of a reconstruction, checked: encoders (an ensemble), trials, their behaviour in
the order a model wants it, and the models frozen on a device while their inputs are optimised.

A leaf module: the optimiser, mask learning and the metrics all read their inputs through it.
torch is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..errors import InputError
from ..recording import Recording, Trial


def as_model_list(models) -> list:
    """One model or a sequence of models -> a non-empty list, checked against the encoder contract."""
    import torch

    from ..model.protocol import check_encoder

    if isinstance(models, torch.nn.Module):
        models = [models]
    models = list(models)
    if not models:
        raise ValueError("no models given")
    first = models[0]
    for model in models:
        check_encoder(model, getattr(model, "checkpoint_path", None), error=TypeError)
        if tuple(model.frame_shape) != tuple(first.frame_shape) or int(model.n_neurons) != int(first.n_neurons):
            raise ValueError(
                "ensemble members disagree: frame shapes "
                f"{tuple(model.frame_shape)} vs {tuple(first.frame_shape)}, neurons {model.n_neurons} vs {first.n_neurons}"
            )
    return models


def as_trial_list(trials) -> list[Trial]:
    if isinstance(trials, Trial):
        return [trials]
    if isinstance(trials, Recording):
        return list(trials)
    trials = list(trials)
    if not trials:
        raise ValueError("no trials given")
    for trial in trials:
        if not isinstance(trial, Trial):
            raise TypeError(f"expected Trial objects, got {type(trial).__name__}")
    return trials


def behavior_for(model, trial: Trial) -> np.ndarray:
    """The trial's behaviour channels in the order the model wants them, ``(C, T)``."""
    wanted = tuple(model.behavior_channels)
    missing = [name for name in wanted if name not in trial.behavior_channels]
    if missing:
        raise InputError(
            f"trial {trial.trial_id} has no behaviour channel(s) {missing} that the encoder needs "
            f"(it has {list(trial.behavior_channels)})"
        )
    if not wanted:
        return np.zeros((0, trial.n_frames), np.float32)
    return np.stack([trial.channel(name) for name in wanted]).astype(np.float32)


def check_trials(models, trials: list[Trial], neurons: np.ndarray | None) -> np.ndarray | None:
    """Check frame shapes and neuron counts; return the response rows to use (or None for all)."""
    model = models[0]
    n_model = int(model.n_neurons)
    for trial in trials:
        if tuple(trial.video.shape[1:]) != tuple(model.frame_shape):
            raise InputError(
                f"trial {trial.trial_id} has frames of {tuple(trial.video.shape[1:])}, the encoder expects "
                f"{tuple(model.frame_shape)}"
            )
        n = trial.responses.shape[0]
        expected = n_model if neurons is None else (n_model, len(neurons))
        if neurons is None and n != n_model:
            raise InputError(f"trial {trial.trial_id} has {n} neurons, the encoder predicts {n_model}")
        if neurons is not None and n not in expected:
            raise InputError(
                f"trial {trial.trial_id} has {n} neurons; expected {n_model} (all) or {len(neurons)} (the subset)"
            )
    if neurons is not None:
        neurons = np.asarray(neurons, dtype=np.int64)
        if neurons.ndim != 1 or neurons.size == 0:
            raise ValueError("neurons must be a non-empty 1-D index array")
        if neurons.min() < 0 or neurons.max() >= n_model:
            raise IndexError(f"neuron index out of range for {n_model} neurons")
    return neurons


@contextlib.contextmanager
def models_prepared(models, device):
    """Evaluation mode on ``device`` with frozen parameters, for optimising inputs; all three
    are restored afterwards.

    Freezing is for speed as much as tidiness: the readout's custom backward computes every
    gradient its inputs require, so with trainable parameters a pixel step also paid for the
    readout's grid and weight gradients (8% of a small-preset step on a CPU), and a
    ``backward()`` would leave gradients on the model.
    """
    import torch

    states = [
        (m, m.training, next(m.parameters(), torch.empty(0)).device, [(p, p.requires_grad) for p in m.parameters()])
        for m in models
    ]
    try:
        for model in models:
            model.eval()
            model.to(device)
            for parameter in model.parameters():
                parameter.requires_grad_(False)
        yield models
    finally:
        for model, was_training, original_device, flags in states:
            model.train(was_training)
            model.to(original_device)
            for parameter, flag in flags:
                parameter.requires_grad_(flag)
