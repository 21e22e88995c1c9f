"""The dynamic encoding model: movie + behaviour -> every neuron's firing rate, frame by frame.

``Encoder.forward(video, behavior)`` follows the encoder contract in docs/architecture.md:

- ``video`` ``(B, T, H, W)`` in 0..255 grey levels, ``behavior`` ``(B, C, T)`` in recorded units
  (both normalised inside, with statistics fixed at training time);
- returns ``rates`` ``(B, neurons, T)``, non-negative and causal in time.

Behaviour enters twice, as in mouse V1: running and pupil size scale each neuron's gain
(a small shared network, then per-neuron weights, exponentiated), and pupil position shifts
all receptive-field read points together (the shifter).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import EncoderConfig, Normalization
from .core import WORTHWHILE_COST_FRACTION, Core, FixedSurround, core_macs_per_frame, fixed_surround_cost
from .readout import FixedReadPoints, GaussianReadout, Shifter

PUPIL_POSITION = ("pupil_x", "pupil_y")
SCHEMA_VERSION = 1
KIND = "dynamic-cnn"  # this encoder's name in the registry of encoder kinds (model/registry.py)


class Encoder(nn.Module):
    def __init__(
        self,
        n_neurons: int,
        frame_shape: tuple[int, int],
        behavior_channels: tuple[str, ...] | list[str],
        architecture: EncoderConfig | None = None,
        normalization: Normalization | None = None,
        *,
        neuron_positions=None,
        neuron_ids=None,
    ):
        super().__init__()
        architecture = architecture or EncoderConfig()
        behavior_channels = tuple(str(c) for c in behavior_channels)
        normalization = normalization or Normalization(
            behavior_mean=(0.0,) * len(behavior_channels), behavior_std=(1.0,) * len(behavior_channels)
        )
        if len(normalization.behavior_mean) != len(behavior_channels):
            raise ValueError("normalization has a different number of behaviour channels than the encoder")
        if architecture.output not in ("elu1", "softplus"):
            raise ValueError(f"unknown output nonlinearity {architecture.output!r}")
        self.architecture = architecture
        self.normalization = normalization
        self.n_neurons = int(n_neurons)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.behavior_channels = behavior_channels
        self.neuron_ids = np.arange(n_neurons) if neuron_ids is None else np.asarray(neuron_ids)
        if self.neuron_ids.shape != (self.n_neurons,):
            raise ValueError(f"expected {self.n_neurons} neuron ids, got shape {self.neuron_ids.shape}")
        self.has_positions = neuron_positions is not None
        self.core_frozen = False  # set by param_groups when a pretrained core is trained at rate 0
        self.position_dims = int(np.asarray(neuron_positions).shape[1]) if self.has_positions else 0

        self.register_buffer("video_mean", torch.tensor(float(normalization.video_mean)))
        self.register_buffer("video_std", torch.tensor(float(normalization.video_std)))
        self.register_buffer("behavior_mean", torch.tensor(normalization.behavior_mean, dtype=torch.float32))
        self.register_buffer("behavior_std", torch.tensor(normalization.behavior_std, dtype=torch.float32))

        self.core = Core(architecture)
        self.readout = GaussianReadout(
            self.n_neurons,
            architecture.channels,
            init_sigma=architecture.init_sigma,
            positions=neuron_positions,
            position_hidden=architecture.position_hidden,
        )
        self.gain_index = [i for i, c in enumerate(behavior_channels) if c not in PUPIL_POSITION]
        self.shift_index = (
            [behavior_channels.index(c) for c in PUPIL_POSITION]
            if all(c in behavior_channels for c in PUPIL_POSITION) and architecture.shifter_hidden > 0
            else []
        )
        self.shifter = Shifter(architecture.shifter_hidden) if self.shift_index else None
        if self.gain_index and architecture.behavior_hidden > 0:
            self.gain_net = nn.Sequential(nn.Linear(len(self.gain_index), architecture.behavior_hidden), nn.ELU())
            self.gain_weights = nn.Parameter(torch.zeros(self.n_neurons, architecture.behavior_hidden))
        else:
            self.gain_net = None
            self.gain_weights = None

    # ------------------------------------------------------------------ contract
    @property
    def config(self) -> dict:
        """Everything needed to rebuild this encoder (JSON-able)."""
        return {
            "kind": KIND,
            "schema": SCHEMA_VERSION,
            "architecture": self.architecture.to_dict(),
            "n_neurons": self.n_neurons,
            "frame_shape": list(self.frame_shape),
            "behavior_channels": list(self.behavior_channels),
            "normalization": self.normalization.to_dict(),
            "has_positions": self.has_positions,
            "position_dims": self.position_dims,
        }

    @classmethod
    def build(cls, spec) -> Encoder:
        """A new encoder for a recording (:class:`~.registry.EncoderSpec`): each neuron starts at
        its mean rate, and the core from ``spec.pretrained_core`` where one is given."""
        model = cls(
            spec.n_neurons,
            spec.frame_shape,
            spec.behavior_channels,
            spec.architecture,
            spec.normalization,
            neuron_positions=spec.neuron_positions,
            neuron_ids=spec.neuron_ids,
        )
        model.init_bias_from_mean(spec.mean_response)
        if spec.pretrained_core is not None:
            model.core.load_state_dict(spec.pretrained_core)
            model.pretrained_core = True
        return model

    @classmethod
    def from_config(cls, config: dict, *, neuron_ids=None) -> Encoder:
        """The untrained encoder that :attr:`config` describes (see :func:`encoder_from_config`)."""
        return encoder_from_config(config, neuron_ids=neuron_ids)

    @property
    def history_frames(self) -> int:
        """How many frames (including the current one) can influence an output."""
        return self.architecture.history_frames

    def readout_positions(self) -> torch.Tensor:
        """Receptive-field centres ``(neurons, 2)``, normalised ``(x, y)`` in [-1, 1], no pupil shift (CPU)."""
        with torch.no_grad():
            return self.readout.mu().detach().float().cpu()

    def forward(self, video: torch.Tensor, behavior: torch.Tensor, *, first_frame: int = 0) -> torch.Tensor:
        """Rates ``(B, neurons, T - first_frame)``. The core sees every frame; only frames from
        ``first_frame`` on are read out, so training skips the readout of its burn-in frames (the
        readout is about a third of the cost of a training step on a CPU)."""
        self._check_inputs(video, behavior)
        if not 0 <= first_frame < video.shape[1]:
            raise ValueError(f"first_frame must be in [0, {video.shape[1]}), got {first_frame}")
        features = self.core(self._normalised_video(video))[:, first_frame:]
        z = self._normalised_behavior(behavior)[:, :, first_frame:]
        drive = self.readout(features, self._shift(z)).float()
        return self._rates(drive, self._gain(z))

    def prepare(self, video: torch.Tensor, behavior: torch.Tensor, changing=None) -> PreparedForward:
        """This encoder's forward pass for one fixed ``behavior``, with what stays fixed computed
        once: see :class:`PreparedForward`. ``changing`` (boolean ``(H, W)``) names the pixels
        in which later movies may differ from ``video``; None: anywhere."""
        return PreparedForward(self, video, behavior, changing)

    def _check_inputs(self, video: torch.Tensor, behavior: torch.Tensor) -> None:
        if video.ndim != 4 or tuple(video.shape[2:]) != self.frame_shape:
            raise InputError(
                f"video must be (batch, frames, {self.frame_shape[0]}, {self.frame_shape[1]}), got {tuple(video.shape)}"
            )
        b, t = video.shape[:2]
        if behavior.ndim != 3 or tuple(behavior.shape) != (b, len(self.behavior_channels), t):
            raise InputError(
                f"behaviour must be (batch, {len(self.behavior_channels)} channels {list(self.behavior_channels)}, "
                f"{t} frames), got {tuple(behavior.shape)}"
            )

    def _normalised_video(self, video: torch.Tensor) -> torch.Tensor:
        return (video - self.video_mean) / self.video_std

    def _normalised_behavior(self, behavior: torch.Tensor) -> torch.Tensor:
        return (behavior - self.behavior_mean.view(1, -1, 1)) / self.behavior_std.view(1, -1, 1)

    def _shift(self, z: torch.Tensor) -> torch.Tensor | None:
        """The pupil-position shift of all read points, ``(B, T, 2)``, or None without a shifter."""
        return self.shifter(z[:, self.shift_index]) if self.shifter is not None else None

    def _gain(self, z: torch.Tensor) -> torch.Tensor | None:
        """Each neuron's behavioural gain ``(B, neurons, T)``, or None without a gain network."""
        if self.gain_net is None:
            return None
        hidden = self.gain_net(z[:, self.gain_index].transpose(1, 2).float())  # (B, T, hidden)
        return torch.exp(torch.einsum("bth,nh->bnt", hidden, self.gain_weights))

    def _rates(self, drive: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
        rates = F.elu(drive) + 1.0 if self.architecture.output == "elu1" else F.softplus(drive)
        return rates if gain is None else rates * gain

    # ------------------------------------------------------------------ training
    pretrained_core = False  # True once build() loaded a pretrained core

    def param_groups(self, training) -> list[dict]:
        """AdamW groups for a :class:`~.config.TrainConfig`: a pretrained core at
        ``core_lr_scale`` times the rate (0 freezes it, and it keeps its normalisation
        statistics), each neuron's receptive-field offset at ``rf_offset_lr_scale`` when ROI
        positions drive the read points (docs/encoder.md, "Readout"), the rest at the rate;
        weight decay on matrices and kernels only."""
        core_params = list(self.core.parameters())
        offset_params = [self.readout.mu_offset] if self.readout.position_net is not None else []
        special = {id(p) for p in core_params + offset_params}
        rest = [p for p in self.parameters() if id(p) not in special]

        def groups(params, scale):
            return [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": training.weight_decay,
                 "lr": training.lr * scale},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lr": training.lr * scale},
            ]

        result = groups(rest, 1.0)
        if offset_params:
            result += groups(offset_params, training.rf_offset_lr_scale)
        self.core_frozen = self.pretrained_core and training.core_lr_scale == 0
        if self.core_frozen:
            for p in core_params:
                p.requires_grad_(False)
        else:
            result += groups(core_params, training.core_lr_scale if self.pretrained_core else 1.0)
        return result

    def train(self, mode: bool = True) -> Encoder:
        """As ``nn.Module.train``, except that a core frozen by :meth:`param_groups` stays in
        evaluation mode (its normalisation statistics are the pretrained ones)."""
        super().train(mode)
        if mode and self.core_frozen and not any(p.requires_grad for p in self.core.parameters()):
            self.core.eval()
        return self

    # ------------------------------------------------------------------ helpers
    def init_bias_from_mean(self, mean_response: np.ndarray) -> None:
        """Start each neuron at its mean rate, so early training refines tuning instead of level."""
        m = torch.as_tensor(np.maximum(np.asarray(mean_response, dtype=np.float32), 1e-3))
        if self.architecture.output == "elu1":
            bias = torch.where(m >= 1, m - 1, torch.log(m))
        else:
            bias = torch.log(torch.expm1(m))
        with torch.no_grad():
            self.readout.bias.copy_(bias)

    def parameter_count(self, part: str = "all") -> int:
        module = {"all": self, "core": self.core, "readout": self.readout}[part]
        return int(sum(p.numel() for p in module.parameters()))

    def macs_per_frame(self) -> int:
        """Approximate multiply-accumulates per frame: core + readout (4-point bilinear) + gain."""
        core = core_macs_per_frame(self.architecture, self.frame_shape)
        readout = self.n_neurons * self.architecture.channels * 5
        gain = self.n_neurons * self.architecture.behavior_hidden if self.gain_net is not None else 0
        return int(core + readout + gain)

    def predict(self, video: np.ndarray, behavior: np.ndarray) -> np.ndarray:
        """Rates ``(neurons, T)`` for one trial given as numpy ``video (T, H, W)`` and ``behavior (C, T)``.

        Runs in eval mode without gradients on the encoder's device, the whole trial in one pass.
        """
        from .protocol import predict

        return predict(self, video, behavior)


def encoder_from_config(config: dict, *, neuron_ids=None, neuron_positions=None) -> Encoder:
    """Rebuild an (untrained) encoder from :attr:`Encoder.config`."""
    if config.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"unsupported encoder config schema {config.get('schema')!r} (expected {SCHEMA_VERSION})")
    n = int(config["n_neurons"])
    positions = neuron_positions
    if config.get("has_positions") and positions is None:
        # Placeholder positions; the trained values are loaded from the checkpoint's buffers.
        positions = np.zeros((n, int(config.get("position_dims", 2))), dtype=np.float32)
    return Encoder(
        n,
        tuple(config["frame_shape"]),
        tuple(config["behavior_channels"]),
        EncoderConfig.from_dict(config["architecture"]),
        Normalization.from_dict(config["normalization"]),
        neuron_positions=positions,
        neuron_ids=neuron_ids,
    )


class PreparedForward:
    """An encoder's forward pass for pixel optimisation: one fixed behaviour, and movies that
    differ from a reference movie only inside a region of pixels.

    Reconstruction calls the encoder on the same trial hundreds of times with the same
    recorded behaviour, changing only the pixels under its update mask. Everything else is
    computed once here: the behavioural gain, the read points (receptive-field centres plus
    each frame's pupil shift) as the readout's sampling matrices (:class:`~.readout.FixedReadPoints`),
    and, where ``changing`` leaves part of the frame alone, the core's features there
    (:class:`~.core.FixedSurround`). ``prepared(video)`` then equals ``encoder(video, behavior)``
    up to float rounding, and so does its gradient with respect to the pixels inside
    ``changing`` (outside them the gradient is not computed in full and is meaningless).

    The encoder must be in evaluation mode with its parameters frozen (as
    :func:`movie_reconstruction.reconstruct.optimiser.models_prepared` leaves it), and stay so.
    """

    def __init__(self, encoder: Encoder, video: torch.Tensor, behavior: torch.Tensor, changing=None):
        encoder._check_inputs(video, behavior)
        if encoder.training or any(p.requires_grad for p in encoder.parameters()):
            raise ValueError("prepare an encoder in evaluation mode with frozen parameters")
        self.encoder = encoder
        self.shape = tuple(video.shape)
        with torch.no_grad():
            reference = encoder._normalised_video(video.detach())
            z = encoder._normalised_behavior(behavior)
            self.gain = encoder._gain(z)
            self.surround = None
            if changing is not None and fixed_surround_cost(encoder.core, changing) < WORTHWHILE_COST_FRACTION:
                self.surround = FixedSurround(encoder.core, reference, changing)
            features_shape = (
                self.surround.output.shape[-2:] if self.surround is not None else encoder.core(reference[:1, :1]).shape[-2:]
            )
            self.read_points = FixedReadPoints(encoder.readout, encoder._shift(z), video.shape[:2], tuple(features_shape))

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        """Rates ``(B, neurons, T)`` for a movie ``(B, T, H, W)`` in 0..255."""
        if tuple(video.shape) != self.shape:
            raise InputError(f"this forward pass was prepared for movies of {self.shape}, got {tuple(video.shape)}")
        x = self.encoder._normalised_video(video)
        features = self.surround(x) if self.surround is not None else self.encoder.core(x)
        return self.encoder._rates(self.read_points(features).float(), self.gain)
