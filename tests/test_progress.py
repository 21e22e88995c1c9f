"""Progress output: a bar on a terminal, occasional plain lines in a log; the console keeps
dependencies' chatter out unless --verbose."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from movie_reconstruction import progress
from movie_reconstruction.progress import Progress, run_for_console, run_with_lines


def _counting_job(stages: dict[str, int | None], steps: int):
    for stage, total in stages.items():
        for k in range(1, steps + 1):
            yield Progress(stage, step=k, total=total, metrics={"loss": 1.0 / k})
    return "result"


class _FakeClock:
    def __init__(self, seconds_per_call: float):
        self.now, self.step = 0.0, seconds_per_call

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_log_lines_are_few_plain_and_end_each_stage(monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", _FakeClock(0.05))
    out = io.StringIO()
    assert run_with_lines(_counting_job({"train": 1000, "reconstruct": 400}, 400), out) == "result"
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    train = [line for line in lines if line.startswith("train:")]
    reconstruct = [line for line in lines if line.startswith("reconstruct:")]
    # 400 of 1000 train steps: at most one line per tenth passed, then the end line
    assert 2 <= len(train) <= 5 and train[-1].startswith("train: stopped at 400/1000")
    assert 5 <= len(reconstruct) <= 11 and reconstruct[-1].startswith("reconstruct: done in")
    assert any("% (" in line and "left" in line for line in reconstruct)
    assert len(lines) == len(train) + len(reconstruct)


def test_log_lines_for_work_of_unknown_length_come_every_30_seconds(monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", _FakeClock(1.0))  # one second per event
    out = io.StringIO()
    run_with_lines(_counting_job({"suite2p": None}, 300), out, every_seconds=30)
    lines = out.getvalue().splitlines()
    assert 9 <= len(lines) <= 11, lines  # 300 s of work: a line about every 30 s, and the end
    assert lines[-1].startswith("suite2p: done in 5 min")


def test_relayed_messages_lose_terminal_escapes_and_tabs():
    out = io.StringIO()

    def job():
        yield Progress("extract", 1, 4, message="plane 0:\tROIs: 500\x1b[A\r\n")
        yield Progress("extract", 4, 4)

    run_with_lines(job(), out, every_seconds=0)
    assert out.getvalue().splitlines()[0].endswith("- plane 0: ROIs: 500")


def test_cancelling_a_logged_job_closes_it():
    closed = []

    def job():
        try:
            yield Progress("work", 1, 10)
            raise RuntimeError("boom")
        finally:
            closed.append(True)

    with pytest.raises(RuntimeError):
        run_with_lines(job(), io.StringIO())
    assert closed == [True]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_chooses_a_bar_on_a_terminal_and_lines_elsewhere():
    terminal, log = _Terminal(), io.StringIO()
    run_for_console(_counting_job({"train": 50}, 50), terminal)
    run_for_console(_counting_job({"train": 50}, 50), log)
    assert "\r" in terminal.getvalue() and "it/s" in terminal.getvalue()  # tqdm redraws in place
    assert "\r" not in log.getvalue() and log.getvalue().splitlines()[-1].startswith("train: done")


_NOISE = (
    "import logging, warnings\n"
    "from movie_reconstruction.console import configure_console\n"
    "configure_console({verbose})\n"
    "logging.getLogger('suite2p.io.nwb').warning('pynwb not installed, save_nwb will not work')\n"
    "warnings.warn_explicit('old api', DeprecationWarning, 'x.py', 1, module='suite2p.registration')\n"
    "warnings.warn_explicit('ours', UserWarning, 'y.py', 1, module='movie_reconstruction.align')\n"
)


def test_dependencies_chatter_reaches_the_console_only_with_verbose():
    quiet = subprocess.run([sys.executable, "-c", _NOISE.format(verbose=False)], capture_output=True, text=True)
    loud = subprocess.run([sys.executable, "-c", _NOISE.format(verbose=True)], capture_output=True, text=True)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "pynwb" not in quiet.stderr and "old api" not in quiet.stderr
    assert "ours" in quiet.stderr  # our own warnings are meant for the user
    assert "pynwb" in loud.stderr and "old api" in loud.stderr and "ours" in loud.stderr
