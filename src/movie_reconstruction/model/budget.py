"""The training budget report: how many epochs a member ran against how many its recipe planned,
why it stopped, what an epoch cost, and whether a time budget starved it.

A time budget (``TrainConfig.max_minutes``) makes a result depend on how busy the machine was,
so every trained member says so (:func:`describe_budget`, one :attr:`TrainingBudget.sentence`)
and warns when the clock cut training while validation correlation was still rising. The
"more time" estimate is a rule of thumb, not a prediction of the learning curve: a curve still
rising when it was cut has not levelled off, so the member is offered as many epochs again as
it ran (never beyond the planned ``max_epochs``), priced at its own measured seconds per epoch.
Reads checkpoints' ``config.json`` only: no torch, no Qt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

EARLY_STOPPING = "early stopping"
EPOCH_LIMIT = "epoch limit"
TIME_BUDGET = "time budget"
STOPPED_BY_USER = "stopped by user"
STOP_REASONS = (EARLY_STOPPING, EPOCH_LIMIT, TIME_BUDGET, STOPPED_BY_USER)

RECENT_EPOCHS = 3  # the window in which "still rising" is judged
# Validation r has to have risen by more than this over the window: smaller changes are within
# the epoch-to-epoch noise of a validation correlation on a dozen trials.
STILL_RISING_BY = 0.002


@dataclass(frozen=True)
class TrainingBudget:
    """One trained member's use of its budget; ``more_epochs`` > 0 means the time budget starved it."""

    epochs_run: int  # epochs that ran (the last one may have been cut short)
    epochs_planned: int  # the recipe's max_epochs
    stop_reason: str  # one of STOP_REASONS
    seconds_per_epoch: float  # measured: one pass of training steps plus its validation (nan: none ran)
    max_minutes: float | None  # the time budget (None: none)
    recent_rise: float  # best validation r of the last recent_epochs minus the r just before them
    recent_epochs: int
    more_epochs: int = 0
    more_minutes: float = 0.0

    @property
    def starved(self) -> bool:
        return self.more_epochs > 0

    @property
    def sentence(self) -> str:
        """One line: epochs run against planned, the cost of an epoch, why training stopped."""
        cost = f", {self.seconds_per_epoch:.0f} s each" if math.isfinite(self.seconds_per_epoch) else ""
        why = {
            EARLY_STOPPING: "stopped early: validation r had stopped improving",
            EPOCH_LIMIT: "ran all planned epochs",
            STOPPED_BY_USER: "stopped by the user",
        }.get(self.stop_reason, f"stopped by the {_minutes(self.max_minutes)} time budget")
        if self.stop_reason == TIME_BUDGET:
            why += " while validation r was still rising" if self.starved else " after validation r had levelled off"
        return f"{self.epochs_run} of {self.epochs_planned} planned epochs{cost}; {why}"

    @property
    def warning(self) -> str:
        """Empty unless the time budget starved the member: then how much more time would help, and why."""
        if not self.starved:
            return ""
        return (f"the {_minutes(self.max_minutes)} time budget starved this model: validation r rose "
                f"{self.recent_rise:.3f} over its last {_plural(self.recent_epochs, 'epoch')}; about "
                f"{_plural(math.ceil(self.more_minutes), 'more minute')} would buy "
                f"{_plural(self.more_epochs, 'more epoch')} (as many again as it ran, at its measured "
                f"{self.seconds_per_epoch:.0f} s per epoch)")

    def to_dict(self) -> dict:
        return {**asdict(self), "sentence": self.sentence, "warning": self.warning}


def _minutes(value: float | None) -> str:
    return f"{value:g}-minute" if value else "time"


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def _seconds_per_epoch(history: list[dict], steps_per_epoch: int | None) -> float:
    """What one full epoch cost: its training steps (a last epoch cut short is scaled up by the
    steps it ran) plus one validation."""
    epochs = history[1:]
    if not epochs:
        return math.nan
    elapsed = _number(epochs[-1].get("seconds")) - _number(history[0].get("seconds"))
    steps_run = sum(int(h.get("steps") or 0) for h in epochs)
    if not (steps_per_epoch and steps_run and all("validation_seconds" in h for h in epochs)):
        return elapsed / len(epochs)  # checkpoints without step counts or validation times
    validating = [_number(h["validation_seconds"]) for h in epochs]
    return (elapsed - sum(validating)) * steps_per_epoch / steps_run + validating[-1]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def stop_reason_of(stopped_because: str) -> str:
    """The :data:`STOP_REASONS` entry for a training run's ``stopped_because`` text (checkpoints
    written before the reason was recorded as such hold only the text)."""
    text = stopped_because or ""
    if text.startswith("stopped by request"):
        return STOPPED_BY_USER
    if text.startswith("no better validation"):
        return EARLY_STOPPING
    if "budget" in text:
        return TIME_BUDGET
    return EPOCH_LIMIT


def describe_budget(training_metrics: dict) -> TrainingBudget | None:
    """The budget report of one member from its training metrics (``TrainingResult`` and a
    checkpoint's ``config.json["training_metrics"]`` hold them); None without a training history."""
    history = training_metrics.get("history") or []
    training = training_metrics.get("training") or {}
    if not history or "max_epochs" not in training:
        return None
    epochs_run = len(history) - 1  # history[0] is the untrained model's validation
    seconds_per_epoch = _seconds_per_epoch(history, training_metrics.get("steps_per_epoch"))
    corr = [_number(h.get("val_corr")) for h in history]
    window = min(RECENT_EPOCHS, epochs_run)
    rise = max(corr[-window:]) - corr[-window - 1] if window else math.nan
    budget = TrainingBudget(
        epochs_run=epochs_run,
        epochs_planned=int(training["max_epochs"]),
        stop_reason=training_metrics.get("stop_reason") or stop_reason_of(training_metrics.get("stopped_because", "")),
        seconds_per_epoch=seconds_per_epoch,
        max_minutes=training.get("max_minutes"),
        recent_rise=rise,
        recent_epochs=window,
    )
    starved = (budget.stop_reason == TIME_BUDGET and rise > STILL_RISING_BY and math.isfinite(seconds_per_epoch)
               and epochs_run < budget.epochs_planned)
    if not starved:
        return budget
    more = min(budget.epochs_planned - epochs_run, max(1, epochs_run))
    return TrainingBudget(**{**asdict(budget), "more_epochs": more, "more_minutes": more * seconds_per_epoch / 60})


def checkpoint_budget(checkpoint_dir: str | Path) -> TrainingBudget | None:
    """:func:`describe_budget` of a checkpoint folder's training metrics."""
    from .checkpoint import read_checkpoint_config

    return describe_budget(read_checkpoint_config(checkpoint_dir).get("training_metrics") or {})


def training_summary_lines(checkpoint_dirs: Sequence[str | Path]) -> list[str]:
    """What ``movie-recon train`` prints after training: :func:`summary_lines` of checkpoint folders."""
    from .checkpoint import read_checkpoint_config

    return summary_lines([(Path(folder).name, read_checkpoint_config(folder).get("training_metrics") or {})
                          for folder in checkpoint_dirs])


def summary_lines(members: Sequence[tuple[str, dict]]) -> list[str]:
    """One line per ``(name, training metrics)`` member (best validation r, epochs run against
    planned, why it stopped), each starved member's warning, and for members cut by their time
    budget the budget that would have fed them. For models in memory (the napari train widget),
    the metrics are ``TrainingResult.encoder.training_metrics``."""
    lines, budgets = [], []
    for name, metrics in members:
        budget = describe_budget(metrics)
        if budget is None:
            lines.append(f"{name}: no training record")
            continue
        budgets.append(budget)
        lines.append(f"{name}: best validation r = {_number(metrics.get('best_val_corr')):.3f} at epoch "
                     f"{metrics.get('best_epoch')}; {budget.sentence}")
        if budget.warning:
            lines.append(f"warning: {name}: {budget.warning}")
    starved = [b for b in budgets if b.starved and b.max_minutes]
    if starved:
        # max_minutes is each member's own budget, so the setting has to cover the hungriest member.
        wanted = math.ceil(max(b.max_minutes + b.more_minutes for b in starved))
        lines.append(f"warning: the time budget starved {len(starved)} of {_plural(len(budgets), 'model')}; "
                     f"a budget of about {wanted} minutes per model instead of {starved[0].max_minutes:g} "
                     "would let them train on")
    return lines
