"""What a training run returns: :class:`TrainingResult`, and the training metrics each trained
model carries into its checkpoint (history, why it stopped, the budget report).

Split from :mod:`.train` so that a snapshot run (:mod:`.snapshots`) can finish each of its
members the same way a single run finishes its one model.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from .budget import SNAPSHOT, TrainingBudget, describe_budget


@dataclass
class TrainingResult:
    encoder: object  # Encoder, in eval mode on the training device
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    best_epoch: int = 0
    best_val_corr: float = float("nan")
    stopped_because: str = ""
    seconds: float = 0.0
    device: str = "cpu"
    data_hash: str = ""
    frames_seen: int = 0
    cpu_seconds: float = 0.0  # CPU time of this process (all threads) while training
    budget: TrainingBudget | None = None  # epochs run against planned, why it stopped, starved or not
    # A snapshot run's members in order (train_encoder(..., snapshots=n)); empty for a single model.
    members: list[TrainingResult] = field(default_factory=list, repr=False)

    @property
    def frames_per_second(self) -> float:
        return self.frames_seen / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class RunFacts:
    """What every model of one run shares in its training metrics."""

    steps_per_epoch: int
    device: str
    train_trials: list[int]
    validation_trials: list[int]
    training: dict  # TrainConfig.to_dict()
    data_hash: str


@dataclass(frozen=True)
class Outcome:
    """How one model's training went: its validated state, history and stop reason."""

    history: list[dict]
    best_epoch: int
    best_val_corr: float
    stopped_because: str
    stop_reason: str
    seconds: float
    cpu_seconds: float
    frames_seen: int
    snapshot: dict | None = None  # for a member of a snapshot ensemble: which one, how its phase ended


def finish_model(model, facts: RunFacts, outcome: Outcome) -> TrainingResult:
    """``model`` (already holding its kept state) ready to save: eval mode, trainable again
    (a frozen core is frozen only while training), its training metrics and budget report attached."""
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    metrics = {
        "best_epoch": outcome.best_epoch,
        "best_val_corr": outcome.best_val_corr,
        "epochs": len(outcome.history) - 1,
        "stopped_because": outcome.stopped_because,
        "stop_reason": outcome.stop_reason,
        "steps_per_epoch": facts.steps_per_epoch,
        "seconds": outcome.seconds,
        "cpu_seconds": outcome.cpu_seconds,
        "device": facts.device,
        "train_trials": facts.train_trials,
        "validation_trials": facts.validation_trials,
        "training": facts.training,
        "history": outcome.history,
    }
    if outcome.snapshot is not None:
        metrics["snapshot"] = outcome.snapshot
    budget = describe_budget(metrics)
    metrics["budget"] = budget.to_dict()
    model.training_metrics = metrics
    model.data_hash = facts.data_hash
    return TrainingResult(
        encoder=model, history=outcome.history, best_epoch=outcome.best_epoch, best_val_corr=outcome.best_val_corr,
        stopped_because=outcome.stopped_because, seconds=outcome.seconds, device=facts.device,
        data_hash=facts.data_hash, frames_seen=outcome.frames_seen, cpu_seconds=outcome.cpu_seconds, budget=budget,
    )


def finish_snapshots(model, facts: RunFacts, keeper, history: list[dict]) -> list[TrainingResult]:
    """One finished model per snapshot the run kept (``keeper``: a :class:`~.snapshots.SnapshotKeeper`),
    each with the history up to its own snapshot, and its validation there as its validation r."""
    members = []
    for snapshot in keeper.taken:
        member = copy.deepcopy(model)
        member.load_state_dict(snapshot.state)
        where = "the end of the main phase" if snapshot.phase == 0 else f"the end of learning-rate cycle {snapshot.phase}"
        outcome = Outcome(
            history=history[: snapshot.epochs + 1],
            best_epoch=history[snapshot.epochs]["epoch"],
            best_val_corr=snapshot.val_corr,
            stopped_because=f"snapshot {snapshot.phase + 1} of {keeper.members}: {where}",
            stop_reason=SNAPSHOT,
            seconds=snapshot.seconds,
            cpu_seconds=snapshot.cpu_seconds,
            frames_seen=snapshot.frames_seen,
            snapshot=snapshot_record(keeper, snapshot.phase, facts.training["max_epochs"], snapshot.ended_by),
        )
        members.append(finish_model(member, facts, outcome))
    return members


def snapshot_record(keeper, phase: int, max_epochs: int, ended_by: str) -> dict:
    """What a member's training metrics say about its place in the snapshot run (the budget report reads it)."""
    fractions = keeper.schedule.end_fractions
    return {
        "member": phase,
        "members": keeper.members,
        "ended_by": ended_by,  # "epochs" or "time budget"; before the first snapshot, the run's stop reason
        "planned_epochs": round(fractions[phase] * max_epochs),  # epochs the schedule gives up to this member
        "budget_fraction": fractions[phase] - (fractions[phase - 1] if phase else 0.0),  # this phase's share
    }


def now_since(started: float, cpu_started: float) -> tuple[float, float]:
    """(wall seconds, CPU seconds) since the run started."""
    return time.perf_counter() - started, time.process_time() - cpu_started
