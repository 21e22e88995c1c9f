"""What a training run is built from: the architecture and training settings to use, and a new
encoder of the registered kind, sized and normalised for the recording's training data.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import EncoderConfig, TrainConfig

# The architecture fields a pretrained core fixes: its weights only fit a core of that shape.
CORE_FIELDS = (
    "channels", "blocks", "stem_kernel", "block_kernel", "temporal_kernel", "block_temporal_kernel", "stride", "residual",
)


def resolve_configs(config, training, core_architecture):
    """The architecture and training settings to use; a pretrained core's shape wins over ``config``'s."""
    if config is None:
        config = "small"
    if isinstance(config, str):
        architecture = EncoderConfig.preset(config)
        training = training or TrainConfig.preset(config)
    else:
        architecture = config
        training = training or TrainConfig()
    if core_architecture is not None:
        architecture = replace(architecture, **{f: getattr(core_architecture, f) for f in CORE_FIELDS})
    return architecture, training


def new_encoder(kind, recording, data, architecture, preset, core_state, use_positions):
    """A new encoder of the registered ``kind`` for ``recording``, checked against the contract."""
    from .protocol import check_encoder
    from .registry import EncoderSpec, encoder_factory

    spec = EncoderSpec(
        n_neurons=recording.n_neurons,
        frame_shape=tuple(recording.frame_shape),
        behavior_channels=tuple(recording.behavior_channels),
        neuron_ids=np.asarray(recording.neurons.ids),
        normalization=data.normalization(),
        mean_response=data.mean_response(),
        neuron_positions=recording.neurons.positions if use_positions else None,
        architecture=architecture,
        preset=preset,
        pretrained_core=core_state,
    )
    model = encoder_factory(kind).build(spec)
    check_encoder(model, f"built by encoder kind {kind!r}", error=TypeError)
    return model
