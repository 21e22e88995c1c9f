"""Progress events for long jobs.

Long jobs (suite2p, training, reconstruction) are generators that ``yield`` :class:`Progress`
events and ``return`` their result. The CLI drives them with a tqdm bar, napari with a
``thread_worker`` (whose ``returned`` signal receives the result); closing the generator
(``gen.close()``) cancels the job at the next yield.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass
class Progress:
    stage: str  # e.g. "registration", "epoch", "reconstruction"
    step: int = 0
    total: int | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    preview: Any = None  # optional intermediate result for live display

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
