"""The dynamic encoding model: train on a lab's own recordings, on CPU or GPU.

Importing this package imports torch; ``import movie_reconstruction`` does not.
"""

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
from .train import TrainingResult, train_encoder, train_ensemble

__all__ = [
    "PRESETS",
    "Encoder",
    "EncoderConfig",
    "Normalization",
    "TrainConfig",
    "TrainingResult",
    "bundled_core_path",
    "correlation_to_average",
    "correlation_to_rates",
    "encoder_from_config",
    "evaluate_encoder",
    "load_core_weights",
    "load_encoder",
    "per_neuron_correlation",
    "save_encoder",
    "single_trial_correlation",
    "train_encoder",
    "train_ensemble",
]
