"""The settings of a whole run (:class:`PipelineSettings`), shared by every front end.

Each field describes itself (help, unit, range, choices, stage: :mod:`movie_reconstruction._schema`);
the command line's options, the widgets' advanced sections and docs/settings.md are made from
these descriptions. A settings file (TOML) holds the same names: top-level keys for the run,
a ``[reconstruction]`` table for the pixel optimisation and a ``[training]`` table for
:class:`~movie_reconstruction.model.TrainConfig` fields::

    n_models = 3
    preset = "small"
    [reconstruction]
    iterations = 300
    learning_rate = 3.0
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ._schema import SettingInfo, check_all, described_fields, format_value, nested_replace, setting
from .losses import DEFAULT_LOSS
from .model.config import ENSEMBLE_METHODS, PRESETS, TrainConfig
from .model.registry import BUILTIN_KIND
from .reconstruct.config import ReconstructionConfig
from .reconstruct.controls import RECONSTRUCTING_CONTROLS

MASK_METHODS = ("readout", "learned", "none")


@dataclass(frozen=True)
class PipelineSettings:
    """Everything a run can be told. The defaults are the tool's defaults for a lab session."""

    # extraction (None: from the session's simulation.json hints, the manifest, or suite2p's defaults)
    fs: float | None = setting(None, "imaging volume rate per plane (none: from the manifest or the TIFFs)",
                               stage="extract", kind=float, unit="Hz", low=0.01, high=10000.0, optional=True)
    tau: float | None = setting(None, "indicator decay time: about 0.7 GCaMP6f, 1.0-1.5 GCaMP6s (none: 1.0)",
                                stage="extract", kind=float, unit="s", low=0.01, high=10.0, optional=True)
    diameter: float | None = setting(None, "expected cell diameter (none: 12)", stage="extract", kind=float,
                                     unit="pixels", low=1.0, high=200.0, optional=True)
    cell_threshold: float | None = setting(0.5, "classifier probability a ROI needs (none: suite2p's own iscell)",
                                           stage="extract", kind=float, low=0.0, high=1.0, optional=True)
    small_fov: bool = setting(False, "suite2p settings for a small, low-resolution field of view", stage="extract")
    signal: str = setting("spks", "the trace that becomes the responses: deconvolved spks, F, or F - 0.7 Fneu",
                          stage="build", choices=("spks", "F", "corrected"))
    # training
    n_models: int = setting(3, "ensemble size", stage="train", low=1, high=64, flag="--models")
    preset: str = setting("small", "small: trains on a laptop CPU; fast: half the cost, less accurate; large: for GPUs",
                          stage="train", choices=PRESETS)
    max_epochs: int | None = setting(None, "maximum epochs per model (none: the preset's)", stage="train", kind=int,
                                     low=1, high=100000, optional=True, flag="--epochs")
    max_minutes: float | None = setting(None, "wall-clock budget per model (none: no budget); with snapshots, for "
                                              "the whole run", stage="train", kind=float, unit="min", low=0.01,
                                        high=100000.0, optional=True)
    ensemble_method: str = setting("independent", "independent: each member trained on its own (in parallel on "
                                                  "the workers); snapshots: one run with the whole budget and all "
                                                  "threads, its members the ends of a main phase and of short "
                                                  "learning-rate cycles (docs/encoder.md)",
                                   stage="train", choices=ENSEMBLE_METHODS, advanced=True)
    init_core: str | None = setting(None, "'bundled' pretrained core, or a core/checkpoint path (none: from scratch)",
                                    stage="train", kind=str, optional=True, advanced=True)
    encoder_kind: str = setting(BUILTIN_KIND, "the registered encoder kind to train (a plugin may add others)",
                                stage="train", advanced=True)
    loss: str = setting(DEFAULT_LOSS, "the loss, from the loss table, for training and reconstruction alike "
                                      "(poisson, mse, or one a plugin registers)", stage="run", advanced=True)
    # the preset's training settings with these changes (a settings file's [training] table; scripts, tests)
    training: TrainConfig | None = None
    mask_method: str = setting("readout", "transparency mask: from the readout positions (fast), learned (slow, the "
                                          "paper's), or none (whole frame)", stage="train", choices=MASK_METHODS,
                               advanced=True)
    # reconstruction
    reconstruction: ReconstructionConfig = setting(ReconstructionConfig(), "", stage="reconstruct",
                                                   kind=ReconstructionConfig)
    trials: tuple[int, ...] | None = setting(None, "trial ids to reconstruct (none: every test trial)",
                                             stage="reconstruct", kind=int, several=True, optional=True)
    controls: bool = setting(True, "run the controls and the neuron-count curve", stage="controls")
    control_variants: tuple[str, ...] = setting(
        RECONSTRUCTING_CONTROLS, "the reconstructing controls (the shuffled one costs nothing and always runs)",
        stage="controls", several=True, choices=RECONSTRUCTING_CONTROLS)
    neuron_counts: tuple[int, ...] | None = setting(None, "neuron counts for the curve (none: 1/8, 1/4, 1/2)",
                                                    stage="controls", kind=int, several=True, optional=True, low=1)
    overwrite: bool = setting(False, "replace results made from other input, models or settings", stage="run")
    # execution
    device: str = setting("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps", stage="run")
    seed: int = setting(0, "random seed (members are trained with seed, seed + 1, ...)", stage="run", low=0)
    threads: int | None = setting(None, "torch threads per task (none: the process's or worker's)", stage="run",
                                  kind=int, low=1, high=1024, optional=True)
    retries: int = setting(2, "retries of a failed task before it is reported", stage="run", low=0, high=100)
    report: bool = True

    def __post_init__(self):
        check_all(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def demo(cls, quick: bool = False) -> PipelineSettings:
        """Settings sized for ``movie-recon demo`` (< 10 min) and ``--quick`` (< 2 min) on 2 CPU cores."""
        if quick:
            # the two-minute budget leaves room for one model, one reconstructing control and one subset
            return cls(cell_threshold=0.0, small_fov=True, n_models=1, preset="fast", max_epochs=12,
                       reconstruction=ReconstructionConfig(iterations=50),
                       control_variants=("grey-screen prior",), neuron_counts=(100,))
        # measured on 2 idle cores: simulation ~40 s, suite2p ~55 s, two models ~100 s, the
        # reconstructions and controls ~300 s (docs/user-guide.md, benchmarks/demo_timing.py).
        # Both demos use the fast preset: the small one costs about twice as much per frame, in
        # training and in every reconstruction step, which would take this one past 10 minutes.
        return cls(cell_threshold=0.0, small_fov=True, n_models=2, preset="fast", max_epochs=12,
                   reconstruction=ReconstructionConfig(iterations=60), neuron_counts=(150, 300))


def setting_infos(stages=None) -> list[SettingInfo]:
    """The described settings, of the given stages (None: all)."""
    return [info for info in described_fields(PipelineSettings) if stages is None or info.stage in stages]


def setting_infos_named(names) -> list[SettingInfo]:
    """The described settings with these names, in the given order."""
    by_name = {info.name: info for info in described_fields(PipelineSettings)}
    return [by_name[name] for name in names]


def with_changes(settings: PipelineSettings, **changes) -> PipelineSettings:
    """``settings`` with the given fields changed, ignoring the ones left at None; a key may
    name a reconstruction setting by its own name (``iterations=300``) or dotted
    (``**{"reconstruction.iterations": 300}``)."""
    nested = {f.name for f in dataclasses.fields(ReconstructionConfig)}
    top = {f.name for f in dataclasses.fields(PipelineSettings)}
    resolved = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key not in top and key in nested:
            key = f"reconstruction.{key}"
        resolved[key] = value
    return nested_replace(settings, resolved)


def checked_loss(settings: PipelineSettings) -> str:
    """``settings.loss``, or :class:`~movie_reconstruction.errors.InputError` naming the known losses."""
    from .errors import InputError
    from .losses import get_loss

    try:
        return get_loss(settings.loss).name
    except ValueError as exc:
        raise InputError(str(exc)) from None


def reconstruction_config(settings: PipelineSettings) -> ReconstructionConfig:
    """The :class:`ReconstructionConfig` these settings ask for (the run's seed and loss included)."""
    return replace(settings.reconstruction, seed=settings.seed, loss=checked_loss(settings))


def training_config(settings: PipelineSettings) -> TrainConfig:
    """The :class:`TrainConfig` of a member: the preset's (or ``settings.training``), with the run's
    epoch limit, time budget and loss."""
    from .errors import InputError

    try:
        base = settings.training or TrainConfig.preset(settings.preset)
        changes = {"loss": checked_loss(settings)}
        if settings.max_epochs is not None:
            changes["max_epochs"] = int(settings.max_epochs)
        if settings.max_minutes is not None:
            changes["max_minutes"] = float(settings.max_minutes)
        return base.replace(**changes)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def read_settings_file(path: str | Path, base: PipelineSettings | None = None) -> PipelineSettings:
    """``base`` changed by a settings file (TOML); an unknown name or a bad value is an
    :class:`~movie_reconstruction.errors.InputError` naming the file."""
    from .errors import InputError

    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read the settings file ({exc})", path) from None
    base = base or PipelineSettings()
    changes: dict = {}
    known = {info.name for info in setting_infos()} | {"report"}
    training_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in values.items():
        if key == "training" and isinstance(value, dict):
            unknown = sorted(set(value) - training_fields)
            if unknown:
                raise InputError(f"unknown [training] setting(s) {unknown}; known: {sorted(training_fields)}", path)
            changes["training"] = (base.training or TrainConfig.preset(values.get("preset", base.preset))).replace(**value)
            continue
        items = {f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value}
        for name, v in items.items():
            if name not in known:
                raise InputError(f"unknown setting {name!r} (docs/settings.md lists them)", path)
            changes[name] = tuple(v) if isinstance(v, list) else v
    try:
        return nested_replace(base, changes)
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc), path) from None


def settings_table() -> str:
    """docs/settings.md's table, made from the settings' own descriptions
    (``python -m movie_reconstruction.settings`` prints it)."""
    lines = ["| setting | command line | stage | default | unit | range or choices | what it does |",
             "|---|---|---|---|---|---|---|"]
    for info in setting_infos():
        if info.choices:
            span = ", ".join(str(c) for c in info.choices)
        elif info.low is not None and info.high is not None:
            span = f"{info.low:g} to {info.high:g}"
        else:
            span = f"at least {info.low:g}" if info.low is not None else ""
        lines.append(f"| `{info.name}` | `{info.option}` | {info.stage} | {format_value(info.default)} | {info.unit} | "
                     f"{span} | {info.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
