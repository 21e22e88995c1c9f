"""The status line and log of a widget's job (no Qt): units, time left, terminal codes kept out."""

from __future__ import annotations

import pytest

from movie_reconstruction._widgets._job_status import (
    JobLog,
    RemainingTime,
    clean_line,
    describe_seconds,
    is_progress_bar,
    status_line,
)
from movie_reconstruction.progress import Progress

# what suite2p's relayed console output looks like (a tqdm bar redrawn with cursor-up codes)
SUITE2P_BAR = "plane 0: \x1b[A\r 40%|####      | 4/10 [00:01<00:02,  3.20it/s]\x1b[A\r 50%|#####     | 5/10 [00:02<00:02,  3.10it/s]"


def test_terminal_codes_and_bar_redraws_are_cleaned_to_the_last_drawing():
    line = clean_line(SUITE2P_BAR)
    assert "\x1b" not in line and "\r" not in line
    assert line == "plane 0: 50%|##### | 5/10 [00:02<00:02, 3.10it/s]"
    assert clean_line("\x1b[31mred\x1b[0m\ttext\x1b]0;title\x07 ") == "red text"
    assert is_progress_bar(line) and not is_progress_bar("plane 0: registration")


def test_status_line_names_stage_and_unit_never_the_raw_message():
    training = Progress("train", 1410, 3000, "model 2/3: epoch 4", context={"member": 1, "members": 3})
    assert status_line(training, 185.0) == "train · model 2/3 · 47% · about 3 min left"
    task = Progress("reconstruct", 250, 1000, "x", context={"trial_id": 8, "member": 0, "members": 2})
    assert status_line(task) == "reconstruct · trial 8 · model 1/2 · 25%"
    suite2p = Progress("extract: registration", 3, 10, SUITE2P_BAR)
    text = status_line(suite2p, 42.0)
    assert text == "extract · registration · 30% · about 40 s left"
    assert "\x1b" not in text and "it/s" not in text
    assert status_line(Progress("build", 0, None, "aligning")) == "build"


def test_time_left_comes_from_the_stage_pace_and_restarts_with_each_stage():
    now = [0.0]
    remaining = RemainingTime(clock=lambda: now[0])
    assert remaining.update(Progress("train", 0, 100)) is None  # the stage starts
    now[0] = 1.0
    assert remaining.update(Progress("train", 10, 100)) is None  # too early for an estimate
    now[0] = 10.0
    assert remaining.update(Progress("train", 25, 100)) == pytest.approx(30.0)  # 25% in 10 s: 30 s to go
    now[0] = 11.0
    assert remaining.update(Progress("reconstruct", 50, 100)) is None  # a new (resumed) stage starts at 50%
    now[0] = 21.0
    assert remaining.update(Progress("reconstruct", 75, 100)) == pytest.approx(10.0)  # 25% in 10 s, 25% left
    assert remaining.update(Progress("reconstruct", 0, None)) is None  # no total: no estimate


def test_durations_are_rounded_for_reading():
    assert [describe_seconds(s) for s in (4, 44, 61, 185, 3600, 4920)] == ["10 s", "40 s", "1 min", "3 min", "1 h", "1 h 22 min"]


def test_log_keeps_one_line_per_redrawn_bar_and_the_newest_lines():
    log = JobLog(max_lines=3)
    assert log.add("extract: registration", "plane 0: registering")
    assert log.add("extract: registration", "plane 0:  10%|#    | 1/10 [00:00<00:09, 1.0it/s]")
    assert log.add("extract: registration", "\x1b[Aplane 0:  20%|##   | 2/10 [00:01<00:08, 1.0it/s]")
    assert not log.add("extract: registration", "plane 0:  20%|##   | 2/10 [00:01<00:08, 1.0it/s]")  # repeated
    assert log.text().splitlines() == [
        "extract: registration: plane 0: registering",
        "extract: registration: plane 0: 20%|## | 2/10 [00:01<00:08, 1.0it/s]",
    ]
    for k in range(3):
        log.add("train", f"epoch {k}")
    assert log.text().splitlines() == ["train: epoch 0", "train: epoch 1", "train: epoch 2"]
