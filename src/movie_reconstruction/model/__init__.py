"""The dynamic encoding model: train on a lab's own recordings, on CPU or GPU.

The names below are loaded on first use, so that the torch-free parts (``model.config``,
``model.registry``, ``model.protocol``) import without torch; ``Encoder``, training and
checkpoints import torch. ``import movie_reconstruction`` imports none of this.

Extension points (docs/architecture.md): :func:`register_encoder` adds an encoder kind,
:class:`EncoderModel` states the encoder contract, and ``movie_reconstruction.losses``
holds the loss table.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {
    "TrainingBudget": "budget",
    "describe_budget": "budget",
    "summary_lines": "budget",
    "training_summary_lines": "budget",
    "load_encoder": "checkpoint",
    "save_encoder": "checkpoint",
    "PRESETS": "config",
    "EncoderConfig": "config",
    "Normalization": "config",
    "TrainConfig": "config",
    "Encoder": "encoder",
    "encoder_from_config": "encoder",
    "correlation_to_average": "metrics",
    "correlation_to_rates": "metrics",
    "evaluate_encoder": "metrics",
    "per_neuron_correlation": "metrics",
    "single_trial_correlation": "metrics",
    "bundled_core_path": "pretrained",
    "load_core_weights": "pretrained",
    "EncoderModel": "protocol",
    "BUILTIN_KIND": "registry",
    "EncoderSpec": "registry",
    "encoder_kinds": "registry",
    "register_encoder": "registry",
    "TrainingResult": "training_result",
    "train_encoder": "train",
    "train_ensemble": "train",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from .budget import TrainingBudget, describe_budget, summary_lines, training_summary_lines
    from .checkpoint import load_encoder, save_encoder
    from .config import PRESETS, EncoderConfig, Normalization, TrainConfig
    from .encoder import Encoder, encoder_from_config
    from .metrics import (
        correlation_to_average,
        correlation_to_rates,
        evaluate_encoder,
        per_neuron_correlation,
        single_trial_correlation,
    )
    from .pretrained import bundled_core_path, load_core_weights
    from .protocol import EncoderModel
    from .registry import BUILTIN_KIND, EncoderSpec, encoder_kinds, register_encoder
    from .train import train_encoder, train_ensemble
    from .training_result import TrainingResult
