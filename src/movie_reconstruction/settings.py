"""The settings of a whole run (:class:`PipelineSettings`), shared by every front end: the
command line, the napari widgets and the Dask tasks read and change the same fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from .losses import DEFAULT_LOSS
from .model.registry import BUILTIN_KIND


@dataclass(frozen=True)
class PipelineSettings:
    """Everything a run can be told. The defaults are the tool's defaults for a lab session."""

    # extraction (None: from the session's simulation.json hints, the manifest, or suite2p's defaults)
    fs: float | None = None
    tau: float | None = None
    diameter: float | None = None
    cell_threshold: float | None = 0.5
    small_fov: bool = False  # suite2p settings for a small, low-resolution field of view
    signal: str = "spks"  # which trace becomes the responses: spks, F or corrected
    # training
    n_models: int = 3
    preset: str = "small"
    max_epochs: int | None = None
    max_minutes: float | None = None
    init_core: str | None = None  # "bundled", a core file, or None (from scratch)
    encoder_kind: str = BUILTIN_KIND  # a registered encoder kind (model.register_encoder)
    loss: str = DEFAULT_LOSS  # from the loss table (movie_reconstruction.losses), for training and reconstruction
    # reconstruction
    iterations: int = 200
    trials: tuple[int, ...] | None = None  # trial ids; None: every test trial
    controls: bool = True
    control_variants: tuple[str, ...] = ("time-reversed", "circular shift", "grey-screen prior")  # + shuffled, always
    neuron_counts: tuple[int, ...] | None = None  # None: 1/8, 1/4, 1/2 of the neurons
    overwrite: bool = False  # replace reconstructions made with other models or settings
    # execution
    device: str = "auto"
    seed: int = 0
    threads: int | None = None  # torch threads per task (None: leave as is)
    retries: int = 2
    report: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def demo(cls, quick: bool = False) -> PipelineSettings:
        """Settings sized for ``movie-recon demo`` (< 10 min) and ``--quick`` (< 2 min) on 2 CPU cores."""
        if quick:
            # the two-minute budget leaves room for one model, one reconstructing control and one subset
            return cls(cell_threshold=0.0, small_fov=True, n_models=1, preset="fast", max_epochs=12, iterations=50,
                       control_variants=("grey-screen prior",), neuron_counts=(100,))
        # measured on 2 idle cores: simulation ~40 s, suite2p ~55 s, two models ~100 s, the
        # reconstructions and controls ~300 s (docs/user-guide.md, benchmarks/demo_timing.py).
        # Both demos use the fast preset: the small one costs about twice as much per frame, in
        # training and in every reconstruction step, which would take this one past 10 minutes.
        return cls(cell_threshold=0.0, small_fov=True, n_models=2, preset="fast", max_epochs=12, iterations=60,
                   neuron_counts=(150, 300))


def with_changes(settings: PipelineSettings, **changes) -> PipelineSettings:
    """``settings`` with the given fields changed, ignoring the ones left at None."""
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})


def checked_loss(settings: PipelineSettings) -> str:
    """``settings.loss``, or :class:`~movie_reconstruction.errors.InputError` naming the known losses."""
    from .errors import InputError
    from .losses import get_loss

    try:
        return get_loss(settings.loss).name
    except ValueError as exc:
        raise InputError(str(exc)) from None


def reconstruction_config(settings: PipelineSettings):
    """The :class:`~movie_reconstruction.reconstruct.ReconstructionConfig` these settings ask for."""
    from .reconstruct import ReconstructionConfig

    return ReconstructionConfig(iterations=settings.iterations, seed=settings.seed, loss=checked_loss(settings))
