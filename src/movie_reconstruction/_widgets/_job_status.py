"""What a running job shows: one short status line (stage, unit, percentage, time left) and a
log of the messages it passes on (suite2p's console lines among them), cleaned of terminal codes.

Plain Python (no Qt), so it is tested without a display.
"""

from __future__ import annotations

import re
import time
from collections import deque

from ..progress import Progress

# CSI sequences (cursor moves such as "\x1b[A", colours) and OSC sequences (window titles)
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# a tqdm bar ("40%|####  | 4/10 [00:01<00:02, 3.2it/s]") or its bare counter ("4/10 [00:01<00:02")
_BAR = re.compile(r"\d+%\|.*\||\d+/\d+ \[\d")
LOG_LINES = 500  # the log keeps the newest lines: suite2p alone prints thousands on a long run


def _last_drawing(line: str) -> str:
    """What a terminal would show of a line redrawn with carriage returns (tqdm's way), keeping
    a prefix that is not itself a drawing (the relaying job's "plane 0: ")."""
    first, *redraws = line.split("\r")
    if not redraws:
        return first
    return redraws[-1] if is_progress_bar(first) else first + redraws[-1]


def clean_line(text: str) -> str:
    """One readable line: terminal codes removed, only the last drawing of a redrawn bar kept,
    whitespace collapsed."""
    text = _TERMINAL_CODES.sub("", str(text))
    lines = [_last_drawing(part) for part in text.split("\n")]
    return " ".join(" ".join(_CONTROL.sub(" ", line).split()) for line in lines if line.strip())


def is_progress_bar(line: str) -> bool:
    return bool(_BAR.search(line))


def describe_seconds(seconds: float) -> str:
    """A rounded duration for a time-left estimate: "40 s", "3 min", "1 h 20 min"."""
    if seconds < 60:
        return f"{max(10, int(round(seconds / 10.0)) * 10)} s"
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class RemainingTime:
    """Time left in the current stage, from its pace so far.

    The clock restarts when the stage changes, from the fraction the stage had reached then
    (a resumed stage starts part-way). No estimate until the stage has run a few seconds and
    moved a little: an early guess from one step is mostly noise.
    """

    def __init__(self, clock=time.monotonic, settle_seconds: float = 3.0, settle_fraction: float = 0.02):
        self.clock = clock
        self.settle_seconds, self.settle_fraction = settle_seconds, settle_fraction
        self.stage: str | None = None
        self.started = 0.0
        self.start_fraction = 0.0

    def update(self, event: Progress) -> float | None:
        fraction = event.fraction
        now = self.clock()
        if event.stage != self.stage or fraction is None or fraction < self.start_fraction:
            self.stage, self.started, self.start_fraction = event.stage, now, fraction or 0.0
            return None
        elapsed, done = now - self.started, fraction - self.start_fraction
        if elapsed < self.settle_seconds or done < self.settle_fraction or fraction >= 1.0:
            return None
        return elapsed * (1.0 - fraction) / done


def member_words(context: dict) -> str:
    """e.g. "model 2/3", or "snapshot 2/3" for the member a snapshot run is making."""
    kind = "snapshot" if context.get("snapshot") else "model"
    return f"{kind} {int(context['member']) + 1}/{int(context['members'])}"


def _where(context: dict) -> list[str]:
    """The origin of an event (Progress.context) as words: which trial, which ensemble member."""
    parts = []
    if "trial_id" in context:
        parts.append(f"trial {context['trial_id']}")
    if "member" in context and "members" in context:
        parts.append(member_words(context))
    if "positions" in context and "trial_id" not in context:
        parts.append(f"{len(context['positions'])} trials at once")
    return parts


def status_line(event: Progress, seconds_left: float | None = None) -> str:
    """e.g. "train · model 2/3 · 41% · about 3 min left" (never the event's free-text message)."""
    parts = [clean_line(event.stage).replace(": ", " · ") or "working"]
    parts += _where(event.context)
    if event.fraction is not None:
        parts.append(f"{100 * event.fraction:.0f}%")
    if seconds_left is not None:
        parts.append(f"about {describe_seconds(seconds_left)} left")
    return " · ".join(parts)


class JobLog:
    """The newest messages of a job, one cleaned line each. A progress bar that redraws (tqdm's
    lines relayed from suite2p) replaces its previous line instead of adding one per redraw."""

    def __init__(self, max_lines: int = LOG_LINES):
        self.lines: deque[str] = deque(maxlen=max_lines)
        self._last_was_bar = False
        self._last_message = ""

    def clear(self) -> None:
        self.lines.clear()
        self._last_was_bar, self._last_message = False, ""

    def add(self, stage: str, message: str) -> bool:
        """Add a message; False when there was nothing new to add."""
        text = clean_line(message)
        if not text or text == self._last_message:
            return False
        self._last_message = text
        line = f"{clean_line(stage)}: {text}" if stage else text
        bar = is_progress_bar(text)
        if bar and self._last_was_bar and self.lines:
            self.lines[-1] = line
        else:
            self.lines.append(line)
        self._last_was_bar = bar
        return True

    def text(self) -> str:
        return "\n".join(self.lines)
