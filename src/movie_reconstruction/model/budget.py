"""The training budget report: how many epochs a member ran against how many its recipe planned,
why it stopped, what an epoch cost, and whether a time budget starved it.

A time budget (``TrainConfig.max_minutes``) makes a result depend on how busy the machine was,
so every trained member says so (:func:`describe_budget`, one :attr:`TrainingBudget.sentence`)
and warns when the clock cut training while validation correlation was still rising. The
"more time" estimate is a rule of thumb, not a prediction of the learning curve: a curve still
rising when it was cut has not levelled off, so the member is offered as many epochs again as
it ran (never beyond the planned ``max_epochs``), priced at its own measured seconds per epoch.

A member of a snapshot ensemble (:mod:`.snapshots`) says which snapshot it is and what ended its
phase (its planned epochs, or its share of the time budget). Only member 0 is judged for
starvation: its history is the main phase alone, whose curve says whether the run needed more
time; later members' histories hold learning-rate restarts, whose dips and recoveries are the
schedule, not the learning curve. Their budget is the whole run's, so more time is priced for
the run: what gives the main phase, at its share of the budget, as many epochs again.
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
SNAPSHOT = "snapshot"  # a snapshot ensemble's member, taken where its learning-rate phase ended
STOP_REASONS = (EARLY_STOPPING, EPOCH_LIMIT, TIME_BUDGET, STOPPED_BY_USER, SNAPSHOT)

RECENT_EPOCHS = 3  # the window in which "still rising" is judged
# Validation r has to have risen by more than this over the window: smaller changes are within
# the epoch-to-epoch noise of a validation correlation on a dozen trials.
STILL_RISING_BY = 0.002


@dataclass(frozen=True)
class TrainingBudget:
    """One trained member's use of its budget; ``more_epochs`` > 0 means the time budget starved it."""

    epochs_run: int  # epochs that ran (the last one may have been cut short)
    epochs_planned: int  # the recipe's max_epochs (a snapshot: the epochs its schedule gives up to it)
    stop_reason: str  # one of STOP_REASONS
    seconds_per_epoch: float  # measured: one pass of training steps plus its validation (nan: none ran)
    max_minutes: float | None  # the time budget (None: none); a snapshot run's is the whole run's
    recent_rise: float  # best validation r of the last recent_epochs minus the r just before them
    recent_epochs: int
    more_epochs: int = 0
    more_minutes: float = 0.0
    snapshot: int | None = None  # a snapshot ensemble's member: its index (None: trained on its own)
    snapshots: int = 0  # members of its snapshot ensemble
    ended_by: str = ""  # what ended a snapshot's phase: "epochs" or "time budget" (none taken: the stop reason)

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
            SNAPSHOT: self._phase_end(),
        }.get(self.stop_reason, f"stopped by the {_minutes(self.max_minutes)} time budget")
        if self.stop_reason == TIME_BUDGET or (self.stop_reason == SNAPSHOT and self.snapshot == 0
                                               and self.ended_by == TIME_BUDGET):
            why += " while validation r was still rising" if self.starved else " after validation r had levelled off"
        if self.snapshot is not None:
            why = f"snapshot {self.snapshot + 1} of {self.snapshots}: {why}"
        return f"{self.epochs_run} of {self.epochs_planned} planned epochs{cost}; {why}"

    def _phase_end(self) -> str:
        phase = "the end of the main phase" if self.snapshot == 0 else f"the end of learning-rate cycle {self.snapshot}"
        if self.ended_by == TIME_BUDGET:
            return f"{phase}, set by its share of the {_minutes(self.max_minutes)} time budget"
        return f"{phase}, after its planned epochs"

    @property
    def warning(self) -> str:
        """Empty unless the time budget starved the member: then how much more time would help, and why."""
        if not self.starved:
            return ""
        what, minutes, buys = "this model", "", ""
        if self.snapshot is not None:
            what, minutes, buys = "this snapshot run's main phase", " for the whole run", "the main phase "
        return (f"the {_minutes(self.max_minutes)} time budget starved {what}: validation r rose "
                f"{self.recent_rise:.3f} over its last {_plural(self.recent_epochs, 'epoch')}; about "
                f"{_plural(math.ceil(self.more_minutes), 'more minute')}{minutes} would buy {buys}"
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
    if text.startswith("snapshot"):
        return SNAPSHOT
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
    snapshot = training_metrics.get("snapshot") or {}
    epochs_run = len(history) - 1  # history[0] is the untrained model's validation
    seconds_per_epoch = _seconds_per_epoch(history, training_metrics.get("steps_per_epoch"))
    corr = [_number(h.get("val_corr")) for h in history]
    window = min(RECENT_EPOCHS, epochs_run)
    rise = max(corr[-window:]) - corr[-window - 1] if window else math.nan
    budget = TrainingBudget(
        epochs_run=epochs_run,
        epochs_planned=int(snapshot.get("planned_epochs", training["max_epochs"])),
        stop_reason=training_metrics.get("stop_reason") or stop_reason_of(training_metrics.get("stopped_because", "")),
        seconds_per_epoch=seconds_per_epoch,
        max_minutes=training.get("max_minutes"),
        recent_rise=rise,
        recent_epochs=window,
        snapshot=int(snapshot["member"]) if "member" in snapshot else None,
        snapshots=int(snapshot.get("members", 0)),
        ended_by=str(snapshot.get("ended_by", "")),
    )
    # A snapshot run's main phase cut by its share of the clock is judged as a run cut by the clock.
    cut_by_clock = budget.stop_reason == TIME_BUDGET or (
        budget.stop_reason == SNAPSHOT and budget.snapshot == 0 and budget.ended_by == TIME_BUDGET)
    starved = (cut_by_clock and rise > STILL_RISING_BY and math.isfinite(seconds_per_epoch)
               and epochs_run < budget.epochs_planned)
    if not starved:
        return budget
    more = min(budget.epochs_planned - epochs_run, max(1, epochs_run))
    # A longer budget lengthens every phase of a snapshot run in proportion: the main phase gets
    # only its share of the extra minutes.
    share = float(snapshot.get("budget_fraction") or 1.0)
    return TrainingBudget(**{**asdict(budget), "more_epochs": more, "more_minutes": more * seconds_per_epoch / 60 / share})


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
        what = "validation r" if budget.stop_reason == SNAPSHOT else "best validation r"
        lines.append(f"{name}: {what} = {_number(metrics.get('best_val_corr')):.3f} at epoch "
                     f"{metrics.get('best_epoch')}; {budget.sentence}")
        if budget.warning:
            lines.append(f"warning: {name}: {budget.warning}")
    starved = [b for b in budgets if b.starved and b.max_minutes]
    if starved:
        # max_minutes is each member's own budget, so the setting has to cover the hungriest member;
        # a snapshot run's is the whole run's, and only its member 0 is ever judged starved.
        wanted = math.ceil(max(b.max_minutes + b.more_minutes for b in starved))
        if starved[0].snapshot is not None:
            lines.append(f"warning: the time budget starved the snapshot run's main phase; a budget of about {wanted} "
                         f"minutes for the whole run instead of {starved[0].max_minutes:g} would let it train on")
        else:
            lines.append(f"warning: the time budget starved {len(starved)} of {_plural(len(budgets), 'model')}; "
                         f"a budget of about {wanted} minutes per model instead of {starved[0].max_minutes:g} "
                         "would let them train on")
    return lines
