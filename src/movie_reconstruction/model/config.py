"""Architecture and training settings, as plain dataclasses that round-trip through JSON.

Three presets:

- ``fast``: the small preset at 16 channels, half its cost per frame, a bit less accurate (0.78
  of the twin benchmark's ceiling against 0.82); for demos and quick looks. The bundled
  pretrained core has this shape.
- ``small``: about 10 million multiply-accumulates per 36x64 frame; trains on a 2-core CPU
  (the acceptance run: 2,000 neurons, 20 min of movie, a 20-minute budget; docs/encoder.md).
- ``large``: wider and deeper, with temporal convolutions in every block, for GPUs; the
  direction of the published encoders (DwiseNeuro), not their exact size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

PRESETS = ("fast", "small", "large")
# How an ensemble's members are made: each trained on its own, or as the snapshots of one run (model.snapshots)
ENSEMBLE_METHODS = ("independent", "snapshots")


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the core, readout and behaviour terms."""

    channels: int = 24  # feature channels of the core
    blocks: int = 3  # convolution blocks after the stem
    stem_kernel: int = 9  # spatial kernel of the first convolution
    block_type: str = "dense"  # "dense" (one full kxk convolution) or "separable" (1x1, kxk depthwise, 1x1)
    block_kernel: int = 3  # spatial kernel of the block convolutions
    temporal_kernel: int = 11  # causal temporal kernel of the stem, in frames
    block_temporal_kernel: int = 1  # causal temporal kernel inside each block (1 = none)
    stride: int = 2  # spatial stride of the stem (2 halves the feature map, 4x fewer MACs)
    residual: bool = False  # residual connections around blocks
    behavior_hidden: int = 8  # hidden units of the behaviour-gain network
    shifter_hidden: int = 8  # hidden units of the pupil-position shifter (0 = no shifter)
    position_hidden: int = 16  # hidden units of the ROI-position -> RF-position network
    init_sigma: float = 0.1  # initial std of the Gaussian readout's sampling jitter
    output: str = "elu1"  # rectifying output: "elu1" (ELU + 1) or "softplus"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown encoder settings {unknown}")
        return cls(**values)

    @classmethod
    def preset(cls, name: str) -> EncoderConfig:
        if name == "small":
            return cls()
        if name == "fast":
            return cls(channels=16)
        if name == "large":
            return cls(
                channels=128,
                blocks=8,
                stem_kernel=9,
                block_type="separable",
                block_kernel=7,
                temporal_kernel=15,
                block_temporal_kernel=5,
                stride=1,
                residual=True,
                behavior_hidden=16,
                shifter_hidden=16,
                position_hidden=32,
            )
        raise ValueError(f"unknown preset {name!r}; expected one of {PRESETS}")

    def replace(self, **changes) -> EncoderConfig:
        """A copy with ``changes``; unknown settings are refused as in :meth:`from_dict`."""
        return EncoderConfig.from_dict({**self.to_dict(), **changes})

    @property
    def history_frames(self) -> int:
        """How many past frames (including the current one) can influence an output."""
        return self.temporal_kernel + self.blocks * (self.block_temporal_kernel - 1)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``max_minutes`` stops training cleanly at a wall-clock budget, and
    the cosine learning-rate decay then runs over that budget if it is shorter than ``max_epochs``.
    For a snapshot ensemble, ``max_epochs`` and ``max_minutes`` are the whole run's, split between
    its phases."""

    max_epochs: int = 40
    patience: int = 6  # epochs without a better validation correlation before stopping
    clip_frames: int = 60  # frames per random training clip (the first history frames are burn-in)
    batch_size: int = 8
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    steps_per_epoch: int | None = None  # default: about one pass over the training frames
    max_minutes: float | None = None
    budget_clock: str = "wall"  # "wall", or "process": CPU time of this process (for shared machines)
    seed: int = 0
    device: str = "auto"
    compile: bool = True  # torch.compile, used only on CUDA
    mixed_precision: bool = True  # autocast, used only on CUDA
    core_lr_scale: float = 1.0  # learning-rate factor for a pretrained core (0 freezes it)
    eval_batch_frames: int = 1200  # frames per forward pass when evaluating validation trials
    # Learning-rate factor for each neuron's receptive-field offset from the position -> RF map, when
    # ROI positions are known. At the full rate, response noise scatters the centres (docs/encoder.md,
    # "Readout"); 0 keeps the shared map only.
    rf_offset_lr_scale: float = 0.1
    loss: str = "poisson"  # a name from the loss table (movie_reconstruction.losses)
    # Snapshot ensembles (model.snapshots; used only when one run makes several members). Each
    # member after the first costs one learning-rate cycle of this share of the budget (epochs or
    # minutes). 0.15 leaves the main phase 70 % of the budget with 3 members: in the 20-minute
    # benchmark (about 20 epochs on 2 cores) the single model was still gaining slowly at its end, so
    # the main phase needs most of the time, while a cycle of about 3 epochs is enough to
    # restart, move away and settle again. A first choice, not yet measured on the twin.
    snapshot_cycle_fraction: float = 0.15
    # The learning rate a cycle restarts at, as a fraction of the peak: well above the floor (0.05)
    # the main phase ended at, so the weights leave the previous member's solution, yet low enough
    # that a short cycle recovers from the restart (a full restart would need a long cycle).
    snapshot_restart_lr: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def preset(cls, name: str) -> TrainConfig:
        if name in ("fast", "small"):
            return cls()
        if name == "large":
            return cls(max_epochs=200, patience=15, clip_frames=90, batch_size=16, lr=2e-3)
        raise ValueError(f"unknown preset {name!r}; expected one of {PRESETS}")

    def replace(self, **changes) -> TrainConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class Normalization:
    """How inputs are standardised before the network sees them (stored in checkpoints)."""

    video_mean: float = 128.0
    video_std: float = 64.0
    behavior_mean: tuple[float, ...] = field(default_factory=tuple)
    behavior_std: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "video_mean": float(self.video_mean),
            "video_std": float(self.video_std),
            "behavior_mean": [float(v) for v in self.behavior_mean],
            "behavior_std": [float(v) for v in self.behavior_std],
        }

    @classmethod
    def from_dict(cls, values: dict) -> Normalization:
        return cls(
            video_mean=float(values["video_mean"]),
            video_std=float(values["video_std"]),
            behavior_mean=tuple(float(v) for v in values["behavior_mean"]),
            behavior_std=tuple(float(v) for v in values["behavior_std"]),
        )
