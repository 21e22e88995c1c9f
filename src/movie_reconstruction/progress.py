"""Progress events for long jobs.

Long jobs (suite2p, training, reconstruction) are generators that ``yield`` :class:`Progress`
events and ``return`` their result. The CLI drives them with a tqdm bar, napari with a
``thread_worker`` (whose ``returned`` signal receives the result); closing the generator
(``gen.close()``) cancels the job at the next yield.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

R = TypeVar("R")


@dataclass
class Progress:
    stage: str  # e.g. "registration", "epoch", "reconstruction"
    step: int = 0
    total: int | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    preview: Any = None  # optional intermediate result for live display
    # Where the event comes from, as data (front ends read these, never the message text):
    # e.g. {"trial_id": 8, "member": 0, "members": 3} for a reconstruction task, or
    # {"positions": [0, 1]} for the trials a reconstruction batch optimises.
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.step / self.total)


Job = Generator[Progress, None, R]


def run(job: Job[R], on_progress: Callable[[Progress], None] | None = None) -> R:
    """Drive a job generator to the end and return its result."""
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)


def relabel(job: Job[R], stage: str, *, nest: bool = False) -> Job[R]:
    """Forward a job's progress under ``stage`` (with ``nest``: as ``"stage: inner stage"``).

    Closing the relabelled job closes the inner one, so cancellation reaches it.
    """
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            event.stage = f"{stage}: {event.stage}" if nest and event.stage not in ("", stage) else stage
            yield event
    finally:
        job.close()


def run_with_tqdm(job: Job[R], desc: str | None = None, **tqdm_kwargs) -> R:
    """Drive a job with a tqdm progress bar (the CLI's way)."""
    from tqdm.auto import tqdm

    bar = None
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            if bar is None or (event.total and bar.total != event.total) or bar.desc != (desc or event.stage):
                if bar is not None:
                    bar.close()
                bar = tqdm(total=event.total, desc=desc or event.stage, **tqdm_kwargs)
            bar.n = event.step
            if event.metrics:
                bar.set_postfix({k: f"{v:.3g}" for k, v in event.metrics.items()}, refresh=False)
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()


# Messages relayed from dependencies (suite2p) may carry terminal escapes, tabs and bar redraws.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _one_line(message: str) -> str:
    return " ".join(_ESCAPES.sub("", message).split())


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class _LineReporter:
    """Plain progress lines for logs and batch jobs: a line when a stage passes another tenth of
    its work (at most one a second), at least every ``every_seconds`` while it runs, and one when
    it ends. A log file then holds a readable history instead of thousands of bar redraws."""

    def __init__(self, stream: TextIO, every_seconds: float, desc: str | None = None):
        self.stream = stream
        self.desc = desc
        self.every_seconds = every_seconds
        self.stage: str | None = None
        self.last: Progress | None = None

    def update(self, event: Progress) -> None:
        now = time.monotonic()
        if event.stage != self.stage:
            self.finish(now)
            self.stage, self.started, self.printed_at, self.decile = event.stage, now, now, 0
        self.last = event
        fraction = event.fraction
        decile = int(fraction * 10) if fraction is not None else self.decile
        due = now - self.printed_at >= self.every_seconds
        passed_a_tenth = decile > self.decile and now - self.printed_at >= 1.0
        if (due or passed_a_tenth) and not (fraction is not None and fraction >= 1.0):
            self._print(event, now)
            self.decile = decile

    def finish(self, now: float | None = None) -> None:
        if self.stage is None or self.last is None:
            return
        now = time.monotonic() if now is None else now
        self._print(self.last, now, done=True)
        self.stage = self.last = None

    def _print(self, event: Progress, now: float, done: bool = False) -> None:
        elapsed = now - self.started
        parts = [f"{self.desc or event.stage or 'working'}:"]
        if done:
            parts.append("done" if event.total is None or event.step >= event.total
                         else f"stopped at {event.step}/{event.total}")
        elif event.total:
            parts.append(f"{100 * event.fraction:.0f}% ({event.step}/{event.total})")
        elif event.step:
            parts.append(f"step {event.step}")
        parts.append(f"in {_format_seconds(elapsed)}" if done else f"{_format_seconds(elapsed)} elapsed")
        fraction = event.fraction
        if not done and fraction and fraction > 0.05:
            parts.append(f"about {_format_seconds(elapsed * (1 - fraction) / fraction)} left")
        if event.metrics:
            parts.append(", ".join(f"{k} {v:.3g}" for k, v in event.metrics.items()))
        if event.message and not done:
            parts.append(f"- {_one_line(event.message)}")
        print(" ".join(parts), file=self.stream, flush=True)
        self.printed_at = now


def run_with_lines(job: Job[R], stream: TextIO | None = None, every_seconds: float = 30.0,
                   desc: str | None = None) -> R:
    """Drive a job, writing occasional plain progress lines (for logs, pipes and batch jobs)."""
    reporter = _LineReporter(stream or sys.stderr, every_seconds, desc)
    try:
        result = run(job, reporter.update)
    finally:
        job.close()
    reporter.finish()
    return result


def run_for_console(job: Job[R], stream: TextIO | None = None, desc: str | None = None) -> R:
    """A tqdm bar on a terminal, plain lines everywhere else (a log file, a pipe, a batch system)."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return run_with_tqdm(job, desc, dynamic_ncols=True, leave=False, file=stream)
    return run_with_lines(job, stream, desc=desc)
