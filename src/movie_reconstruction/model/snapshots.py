"""Learning-rate schedules, and snapshot ensembles: one training run whose schedule yields several members.

An independent ensemble trains each member on its own, so on a small machine the budget is split
between them (issue 28: three members side by side on 2 cores, a third of the threads each, got
about 4 epochs and 0.6 of the noise ceiling, while one model alone reached 0.82). A snapshot
ensemble trains once, with the whole budget and all the threads, and takes its members from the
learning-rate schedule:

- a **main phase** (most of the budget): linear warm-up, then cosine decay to :data:`LR_FLOOR` of
  the peak; its end is member 0;
- then ``members - 1`` short **cycles** (``TrainConfig.snapshot_cycle_fraction`` of the budget
  each): the learning rate restarts at ``TrainConfig.snapshot_restart_lr`` of the peak and decays
  to the floor again; each cycle's end is the next member.

A restart moves the weights away from the previous member, and the decay settles them into a
nearby, different solution, so the members disagree somewhat and their mean is better than one;
each costs a cycle, not a whole run (the idea of snapshot ensembles and fast geometric
ensembling). The phases split ``max_epochs`` into whole epochs, and under a time budget the
same shares of the clock: a phase ends at its step count or its share of ``max_minutes``,
whichever comes first, as the single-phase schedule always did.

No torch here: :mod:`.train` runs the schedule, :mod:`.training_result` turns the kept states into members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .budget import TIME_BUDGET

LR_FLOOR = 0.05  # every phase decays to this fraction of the peak learning rate
# The cycles together take at most this share of the budget, however many members are asked for,
# so that the main phase (which makes the model good; the cycles only make it diverse) keeps half.
MAX_CYCLES_SHARE = 0.5


@dataclass(frozen=True)
class LearningRateSchedule:
    """The learning-rate factor (of the peak) at each training step, and which phase a step is in.

    Phase ``k`` ends after ``end_steps[k]`` training steps or, under a time budget, at
    ``end_fractions[k]`` of it, whichever comes first. One phase is the plain warm-up + cosine run.
    """

    warmup_steps: int
    end_steps: tuple[int, ...]
    end_fractions: tuple[float, ...]
    restart_factor: float = 1.0  # the peak of every phase after the first, as a fraction of the first's

    @property
    def phases(self) -> int:
        return len(self.end_steps)

    @property
    def total_steps(self) -> int:
        return self.end_steps[-1]

    def phase(self, step: int, time_fraction: float | None = None) -> int:
        """The phase that ``step`` (at ``time_fraction`` of a time budget; None: no budget) is in;
        past the end, the last one."""
        for k, (end_step, end_fraction) in enumerate(zip(self.end_steps, self.end_fractions)):
            if step < end_step and (time_fraction is None or time_fraction < end_fraction):
                return k
        return self.phases - 1

    def factor(self, step: int, time_fraction: float | None = None) -> float:
        """The learning rate of ``step`` as a fraction of the peak."""
        k = self.phase(step, time_fraction)
        if k == 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        start_step = self.end_steps[k - 1] if k else self.warmup_steps
        start_fraction = self.end_fractions[k - 1] if k else 0.0
        progress = (step - start_step) / max(1, self.end_steps[k] - start_step)
        if time_fraction is not None:
            # Under a time budget the decay follows whichever runs out first, steps or minutes,
            # so that a phase cut by the clock has still annealed: its end is a usable member.
            progress = max(progress, (time_fraction - start_fraction) / (self.end_fractions[k] - start_fraction))
        peak = 1.0 if k == 0 else self.restart_factor
        return LR_FLOOR + (peak - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def warmup_steps(steps_per_epoch: int, training) -> int:
    return max(1, int(training.warmup_epochs * steps_per_epoch))


def phase_epochs(max_epochs: int, members: int, cycle_fraction: float) -> list[int]:
    """Epochs of the main phase and of each of the ``members - 1`` cycles; they add up to ``max_epochs``.
    :class:`ValueError` when there are too few epochs for a main phase and a cycle per member."""
    if members < 1:
        raise ValueError(f"a snapshot ensemble needs at least one member, got {members}")
    if members == 1:
        return [max_epochs]
    share = min(cycle_fraction, MAX_CYCLES_SHARE / (members - 1))
    cycle = max(1, round(share * max_epochs))
    main = max_epochs - (members - 1) * cycle
    if main < 1:
        raise ValueError(f"a snapshot ensemble of {members} members needs at least {members} epochs "
                         f"(one per learning-rate phase); max_epochs is {max_epochs}")
    return [main] + [cycle] * (members - 1)


def learning_rate_schedule(steps_per_epoch: int, training, members: int = 1) -> LearningRateSchedule:
    """The schedule of a run that makes ``members`` models: one warm-up + cosine phase for one,
    a main phase and ``members - 1`` cycles for a snapshot ensemble."""
    epochs = phase_epochs(training.max_epochs, members, training.snapshot_cycle_fraction)
    ends = [sum(epochs[: k + 1]) for k in range(len(epochs))]
    warmup = warmup_steps(steps_per_epoch, training)
    if members > 1:
        # The main phase has to decay after its warm-up, or member 0 would be taken at the peak.
        warmup = min(warmup, max(1, ends[0] * steps_per_epoch // 2))
    return LearningRateSchedule(
        warmup_steps=warmup,
        end_steps=tuple(e * steps_per_epoch for e in ends),
        end_fractions=tuple(e / training.max_epochs for e in ends),
        restart_factor=training.snapshot_restart_lr if members > 1 else 1.0,
    )


@dataclass
class Snapshot:
    """A member taken at the end of its phase: the state, and how far the run had got then."""

    phase: int
    state: dict  # the model's state_dict (a copy)
    epochs: int  # history entries up to and including this snapshot's validation, epoch 0 excluded
    val_corr: float
    seconds: float
    cpu_seconds: float
    frames_seen: int
    ended_by: str  # "epochs" or TIME_BUDGET ("time budget"): which limit closed the phase


@dataclass
class SnapshotKeeper:
    """Follows a run through its phases and keeps each phase's final state as a member."""

    schedule: LearningRateSchedule
    members: int
    phase: int = 0
    steps_in_phase: int = 0
    taken: list[Snapshot] = field(default_factory=list)

    @property
    def is_ensemble(self) -> bool:
        return self.members > 1

    def context(self) -> dict:
        """Progress.context for the member being made, so front ends show which snapshot it is."""
        return {"member": self.phase, "members": self.members, "snapshot": True} if self.is_ensemble else {}

    def label(self) -> str:
        return f"snapshot {self.phase + 1}/{self.members}, " if self.is_ensemble else ""

    def step_done(self) -> None:
        self.steps_in_phase += 1

    def phase_over(self, step: int, time_fraction: float | None) -> bool:
        """Whether the phase in progress has ended (only after it trained at least one step:
        a phase is never an untrained copy of the one before)."""
        return self.is_ensemble and self.steps_in_phase > 0 and self.schedule.phase(step, time_fraction) > self.phase

    def take(self, state: dict, step: int, time_fraction: float | None, **facts) -> Snapshot:
        """Keep ``state`` as the member of the phase in progress and go on to the next phase."""
        ended_by = "epochs" if step >= self.schedule.end_steps[self.phase] else TIME_BUDGET
        snapshot = Snapshot(phase=self.phase, state=state, ended_by=ended_by, **facts)
        self.taken.append(snapshot)
        # A validation longer than a whole cycle (only with tiny budgets) skips that cycle's member.
        self.phase = max(self.phase + 1, self.schedule.phase(step, time_fraction))
        self.steps_in_phase = 0
        return snapshot

    def last_phase_trained(self) -> bool:
        """Whether the final phase ran, so that the run's last state is a member of its own."""
        return self.phase == self.schedule.phases - 1 and self.steps_in_phase > 0
