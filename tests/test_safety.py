"""Safety of the results folder: one writer at a time, summaries that never disagree with the
trials on disk (whatever interrupts a run), unwritable places and unusable ensemble members
reported in one line, no empty folders left by failed runs, and out-of-memory recovery."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from movie_reconstruction.cli import main
from movie_reconstruction.progress import Progress
from movie_reconstruction.results import PROVENANCE, ResultsFolder, load_results

from test_cli import _fails
from test_results import _write_trial, tiny_recording, untrained_checkpoints

CPU = ["--scheduler", "none", "--threads", "1", "-q", "--device", "cpu"]


def _folder_with_trials(path: Path) -> ResultsFolder:
    folder = ResultsFolder.create(path)
    for tid in (1, 2):
        _write_trial(folder, tid)
    return folder


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


# ---------------------------------------------------------------------------------------- locking
HOLDER = textwrap.dedent("""
    import sys, time
    from movie_reconstruction.results import ResultsFolder
    with ResultsFolder.writing(sys.argv[1], command=["holder-command", "--slow"], create=False):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_a_second_writer_is_refused_and_a_killed_one_releases_the_folder(tmp_path, capsys):
    folder = _folder_with_trials(tmp_path / "res")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder.path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        for argv in (["evaluate", str(folder.path)], ["report", str(folder.path)],
                     ["reconstruct", str(folder.path), *CPU]):
            err = _fails(capsys, argv, str(folder.path), "in use by another run", f"pid {holder.pid}",
                         socket.gethostname(), "holder-command --slow")
        assert "mean masked r" not in capsys.readouterr().out
        assert not (folder.path / "report.html").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel released the dead writer's lock; its record is found and taken over with a warning
    assert main(["evaluate", str(folder.path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stale lock" in err[0] and f"pid {holder.pid}" in err[0], err
    assert not (folder.path / ".lock").exists()  # released when the command ended


def test_a_stale_lock_of_a_pid_that_no_longer_exists_is_taken_over(tmp_path, capsys):
    folder = _folder_with_trials(tmp_path / "res")
    dead = _dead_pid()
    record = {"pid": dead, "host": socket.gethostname(), "started": "2020-01-01T00:00:00Z",
              "command": ["movie-recon", "reconstruct", "res"]}
    (folder.path / ".lock").write_text(json.dumps(record))
    assert main(["evaluate", str(folder.path)]) == 0
    err = capsys.readouterr().err
    assert "stale lock" in err and f"pid {dead}" in err and "movie-recon reconstruct res" in err
    assert not (folder.path / ".lock").exists()


def test_without_flock_the_pid_record_is_the_lock(tmp_path, monkeypatch, recwarn):
    from movie_reconstruction import _lock

    monkeypatch.setattr(_lock, "fcntl", None)  # as on Windows
    folder = _folder_with_trials(tmp_path / "res")
    lock = folder.path / ".lock"
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "started": "x", "command": ["other"]}))
    with pytest.raises(_lock.FolderBusy, match=f"pid {os.getppid()}"):
        with folder.lock():
            pass
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "x", "command": ["old"]}))
    with pytest.warns(_lock.StaleLockWarning, match="old"):
        with folder.lock(["mine"]):
            assert json.loads(lock.read_text())["command"] == ["mine"]
            with folder.lock():  # re-entrant in the holding thread
                pass
    assert not lock.exists()


def test_a_refused_writer_never_removes_the_folder_of_the_run_that_holds_it(tmp_path, monkeypatch):
    """Two runs that both found the folder missing: the one refused must not clean up the other's."""
    import threading

    from movie_reconstruction._lock import FolderBusy
    from movie_reconstruction.results import folder as results_folder_module

    path = tmp_path / "new" / "res"
    holding, release = threading.Event(), threading.Event()

    def first_run():
        with ResultsFolder.writing(path, command=["first"]):
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert holding.wait(60)
        monkeypatch.setattr(results_folder_module, "_first_missing", lambda _: tmp_path / "new")  # as the race saw it
        with pytest.raises(FolderBusy):
            with ResultsFolder.writing(path, command=["second"]):
                pass
        assert (path / PROVENANCE).is_file() and (path / ".lock").is_file()
    finally:
        release.set()
        thread.join(60)


def test_without_flock_an_empty_record_is_a_writer_starting_up(tmp_path, monkeypatch):
    from movie_reconstruction import _lock

    monkeypatch.setattr(_lock, "fcntl", None)
    folder = _folder_with_trials(tmp_path / "res")
    lock = folder.path / ".lock"
    lock.write_text("")  # created, not yet written: another writer between its two steps
    with pytest.raises(_lock.FolderBusy, match="just starting"):
        with folder.lock():
            pass
    old = time.time() - 2 * _lock.RECORD_GRACE_SECONDS
    os.utime(lock, (old, old))  # left empty long ago: a writer that died in between
    with pytest.warns(_lock.StaleLockWarning):
        with folder.lock(["mine"]):
            assert json.loads(lock.read_text())["command"] == ["mine"]
    assert not lock.exists()


# ---------------------------------------------------------------------------------------- unwritable places
@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only: with its permission bits where they bind, else (as root, whom they
    do not bind) by failing every create inside it as a read-only mount does."""

    def make(folder: Path):
        if os.geteuid() != 0:
            folder.chmod(0o555)
            return
        inside = str(folder.absolute())
        real_open, real_mkdir = os.open, os.mkdir

        def refuse(path):
            if os.path.abspath(os.fspath(path)).startswith(inside):
                raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))

        def fake_open(path, flags, *args, **kwargs):
            if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
                refuse(path)
            return real_open(path, flags, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            refuse(path)
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)

    yield make


def test_unwritable_outputs_fail_in_one_line(tmp_path, capsys, read_only):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _fails(capsys, ["train", str(a_file / "sub"), *CPU], str(a_file), "cannot write here")
    if Path("/proc/self").is_dir():  # Linux
        _fails(capsys, ["train", "/proc/movie-recon-test", *CPU], "/proc", "cannot write here")
    folder = _folder_with_trials(tmp_path / "res")
    before = (folder.path / "metrics.json").exists()
    _fails(capsys, ["report", str(folder.path), "-o", str(a_file / "r.html")], "cannot write here")
    read_only(folder.path)
    _fails(capsys, ["evaluate", str(folder.path)], str(folder.path), "Read-only file system")
    assert "mean masked r" not in capsys.readouterr().out  # refused before computing
    _fails(capsys, ["report", str(folder.path)], str(folder.path), "Read-only file system")
    assert (folder.path / "metrics.json").exists() == before and not (folder.path / "report.html").exists()


def test_a_failed_run_leaves_no_new_folder(tmp_path, capsys):
    manifest = tmp_path / "session.toml"
    manifest.write_text("[session]\nname = 'm1'\n")
    _fails(capsys, ["build", str(manifest), "-o", str(tmp_path / "new")], "missing")
    _fails(capsys, ["train", str(tmp_path / "a" / "b"), *CPU], "recording folder not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.toml"]
    existing = ResultsFolder.create(tmp_path / "kept")  # a folder that was there before is never removed
    _fails(capsys, ["train", str(existing.path), *CPU], "recording folder not found")
    assert (existing.path / PROVENANCE).is_file()


# ---------------------------------------------------------------------------------------- checkpoints and members
@pytest.fixture
def small_results(tmp_path):
    results = ResultsFolder.create(tmp_path / "res")
    tiny_recording(results.recording_dir, n_trials=7, n_test=3)
    untrained_checkpoints(results, 1)
    return results


def test_info_flags_a_tampered_checkpoint(small_results, capsys):
    assert main(["info", str(small_results.path)]) == 0
    assert "PROBLEM" not in capsys.readouterr().out
    weights = small_results.model_dir(0) / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    assert main(["info", str(small_results.path)]) == 0
    out = capsys.readouterr().out
    assert "PROBLEM: model_0" in out and "modified or corrupt" in out


def test_an_unusable_member_is_reported_never_dropped(small_results, tmp_path, capsys):
    elsewhere = tmp_path / "unrelated"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("not a model")
    (small_results.models_dir / "model_1").symlink_to(elsewhere, target_is_directory=True)
    _fails(capsys, ["reconstruct", str(small_results.path), "--iterations", "2", "--no-controls", *CPU],
           "model_1", "config.json is missing")
    assert not (small_results.path / "reconstructions").exists()
    assert main(["info", str(small_results.path)]) == 0
    assert "PROBLEM: model_1" in capsys.readouterr().out
    loaded = load_results(small_results.path)  # readers go on without it, and say so
    assert [p.name for p in loaded.checkpoints] == ["model_0"]
    assert any("model_1 was left out" in w for w in loaded.warnings)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------------------------- summaries
@pytest.fixture(scope="module")
def reconstructed(tmp_path_factory):
    """A results folder with three reconstructed trials and their controls (computed once)."""
    results = ResultsFolder.create(tmp_path_factory.mktemp("base") / "res")
    tiny_recording(results.recording_dir, n_trials=7, n_test=3, frames=40)
    untrained_checkpoints(results, 1)
    argv = ["reconstruct", str(results.path), "--iterations", "3", "--control-variants", "time-reversed",
            "--neuron-counts", "10", *CPU]
    assert main(argv) == 0
    assert (results.path / "controls.json").is_file()
    return results.path


def _assert_consistent(path: Path, base: Path) -> None:
    """What every reader sees agrees with the trial files on disk (``base``: the folder the
    controls were computed in)."""
    on_disk = {int(p.parent.name.split("_")[1]): json.loads(p.read_text())["correlation"]
               for p in path.glob("reconstructions/trial_*/trial.json")}
    loaded = load_results(path)
    assert {t.trial_id: t.correlation for t in loaded.trials} == on_disk
    rows = {r["trial_id"]: r["correlation"] for r in loaded.metrics.get("trials", [])}
    assert rows == pytest.approx(on_disk)
    if on_disk:
        assert loaded.metrics["summary"]["mean_correlation"] == pytest.approx(np.mean(list(on_disk.values())))
    info = "\n".join(ResultsFolder.open(path).summary_lines())
    controls = loaded.controls
    if controls is not None:
        def trial_file(root, t):
            file = root / "reconstructions" / f"trial_{t:04d}" / "trial.json"
            return file.read_bytes() if file.is_file() else None

        changed = sorted(t for t in controls["trial_ids"] if trial_file(path, t) != trial_file(base, t))
        if changed:  # controls made from reconstructions that are no longer there are flagged
            assert controls.get("stale") == changed
            assert "STALE" in info and any("controls" in w for w in loaded.warnings)
        else:
            assert not controls.get("stale") and "STALE" not in info


@pytest.mark.parametrize("where", ["before trial", "after trial", "summary", "controls"])
def test_summaries_match_the_trials_after_an_interruption(reconstructed, tmp_path, monkeypatch, capsys, where):
    path = tmp_path / "res"
    shutil.copytree(reconstructed, path)
    name, before, on_call = {"before trial": ("write_trial", True, 2), "after trial": ("write_trial", False, 2),
                             "summary": ("write_metrics", True, 1), "controls": ("write_controls", True, 1)}[where]
    original, calls = getattr(ResultsFolder, name), []

    def interrupting(self, *args, **kwargs):
        calls.append(name)
        if before and len(calls) == on_call:
            raise KeyboardInterrupt
        out = original(self, *args, **kwargs)
        if not before and len(calls) == on_call:
            raise KeyboardInterrupt  # as if killed right after this file was written
        return out

    monkeypatch.setattr(ResultsFolder, name, interrupting)
    argv = ["reconstruct", str(path), "--iterations", "4", "--overwrite", "--control-variants", "time-reversed",
            "--neuron-counts", "10", *CPU]
    assert main(argv) == 130
    monkeypatch.setattr(ResultsFolder, name, original)
    _assert_consistent(path, reconstructed)
    # the next command that writes brings the files themselves in line
    assert main(["reconstruct", str(path), "--trials", "1", "--iterations", "4", "--overwrite", "--no-controls", *CPU]) == 0
    stored = json.loads((path / "metrics.json").read_text())
    on_disk = {int(p.parent.name.split("_")[1]): json.loads(p.read_text())["correlation"]
               for p in path.glob("reconstructions/trial_*/trial.json")}
    assert {r["trial_id"]: r["correlation"] for r in stored["trials"]} == pytest.approx(on_disk)
    _assert_consistent(path, reconstructed)


def _trial_stamps(path: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in path.glob("reconstructions/trial_*/trial.json")}


@pytest.mark.parametrize("rewritten_before_kill", [0, 1, 2])
def test_summaries_match_the_trials_after_a_kill(reconstructed, tmp_path, rewritten_before_kill):
    """SIGKILL runs no cleanup at all: whatever the files hold at that instant must read consistently."""
    path = tmp_path / "res"
    shutil.copytree(reconstructed, path)
    before = _trial_stamps(path)
    argv = [sys.executable, "-m", "movie_reconstruction.cli", "reconstruct", str(path), "--iterations", "40",
            "--overwrite", "--control-variants", "time-reversed", "--neuron-counts", "10", *CPU]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            started = (path / ".lock").exists()
            rewritten = sum(before.get(name) != stamp for name, stamp in _trial_stamps(path).items())
            if started and rewritten >= rewritten_before_kill:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed at this point"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    _assert_consistent(path, reconstructed)
    # the next writer takes the dead run's lock over and leaves the files consistent too
    assert main(["reconstruct", str(path), "--trials", "1", "--iterations", "4", "--overwrite", "--no-controls", *CPU]) == 0
    _assert_consistent(path, reconstructed)


def test_overwriting_some_trials_marks_the_controls_stale(reconstructed, tmp_path, capsys):
    path = tmp_path / "res"
    shutil.copytree(reconstructed, path)
    tid = sorted(json.loads((path / "controls.json").read_text())["trial_ids"])[0]
    assert main(["reconstruct", str(path), "--trials", str(tid), "--iterations", "5", "--overwrite", *CPU]) == 0
    assert "controls.json is stale" in capsys.readouterr().err
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "STALE" in out and f"[{tid}]" in out
    controls = json.loads((path / "controls.json").read_text())
    assert controls["stale"] == [tid] and not (path / "controls.csv").exists()
    _assert_consistent(path, reconstructed)
    assert main(["report", str(path)]) == 0
    assert "out of date" in (path / "report.html").read_text()
    # evaluating gives no verdict from controls of reconstructions that are gone
    capsys.readouterr()
    assert main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "out of date" in out and "beats every control" not in out and "overall:" not in out
    controls = json.loads((path / "controls.json").read_text())
    assert controls["stale"] == [tid] and "overall" not in controls and "verdicts" not in controls
    assert not (path / "controls.csv").exists()


# ---------------------------------------------------------------------------------------- out of memory
def test_out_of_memory_falls_back_to_smaller_batches_then_the_cpu(monkeypatch, caplog):
    import dataclasses

    import torch

    from movie_reconstruction.progress import Progress
    from movie_reconstruction.reconstruct import optimiser
    from movie_reconstruction.reconstruct.optimiser import ReconstructionConfig, reconstruct

    from test_reconstruct import ToyEncoder, make_trials

    model = ToyEncoder(n_neurons=40)
    trials = make_trials(model, n_trials=3, t=20)
    # jitter 0: the jitter's random shifts are drawn per batch, so a run split into smaller batches
    # draws other shifts (as valid, not equal); equality after the fallback holds without it
    config = ReconstructionConfig(iterations=6, early_stopping=False, batch_size=3, preview_every=0, jitter=0)

    def run(job):
        events = []
        while True:
            try:
                events.append(next(job))
            except StopIteration as stop:
                return stop.value, [e.message for e in events if isinstance(e, Progress)]

    expected, _ = run(reconstruct(model, trials, config, device="cpu"))
    real = optimiser._loss_and_gradient
    failures = {"left": 2}

    def flaky(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(optimiser, "_loss_and_gradient", flaky)
    with caplog.at_level("WARNING", logger="movie_reconstruction.reconstruct"):
        result, messages = run(reconstruct(model, trials, config, device="cpu"))
    np.testing.assert_allclose(result.movies, expected.movies, atol=1e-4)
    np.testing.assert_allclose(result.loss_history, expected.loss_history, rtol=1e-5)
    assert [m for m in messages if "out of memory" in m] == [
        "out of memory on cpu with 3 trials per batch: retrying with 2 (finished batches are kept)",
        "out of memory on cpu with 2 trials per batch: retrying with 1 (finished batches are kept)"]
    assert len(result.extra["out_of_memory"]) == 2 and "retrying with 1" in caplog.text
    # a single trial that does not fit on the GPU goes to the CPU; on the CPU there is nothing left to try
    oom = torch.OutOfMemoryError("CUDA out of memory")
    assert optimiser._after_out_of_memory(oom, 1, torch.device("cuda")) == (1, torch.device("cpu"))
    assert optimiser._after_out_of_memory(oom, 4, torch.device("cuda")) == (2, torch.device("cuda"))
    assert optimiser._after_out_of_memory(oom, 1, torch.device("cpu")) is None
    assert optimiser._after_out_of_memory(ValueError("other"), 4, torch.device("cuda")) is None
    failures["left"] = 10  # more failures than halvings: the error reaches the caller
    with pytest.raises(torch.OutOfMemoryError):
        run(reconstruct(model, trials, dataclasses.replace(config, batch_size=2), device="cpu"))


def test_training_out_of_memory_retries_with_smaller_batches_then_the_cpu(monkeypatch, caplog):
    """A model that does not fit is trained again with half the clips per batch, then on the CPU;
    the models of the ensemble already trained are kept."""
    import torch

    from movie_reconstruction import device as device_module
    from movie_reconstruction.model import TrainConfig, train
    from movie_reconstruction.progress import run

    attempts = []

    def train_encoder(recording, config, training, *, device, **kwargs):
        attempts.append((training.seed, training.batch_size, device))
        yield Progress("training", 1, 2)
        if (device == "cuda" and training.seed == 1) or training.seed == 2:  # model 1 never fits on the GPU
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if training.seed == 3:
            raise ValueError("not a memory problem")
        return f"model {training.seed} on {device} with batches of {training.batch_size}"

    monkeypatch.setattr(train, "train_encoder", train_encoder)
    monkeypatch.setattr(device_module, "pick_device", lambda preference: torch.device(preference))
    messages = []
    with caplog.at_level("WARNING", logger="movie_reconstruction.train"):
        results = run(train.train_ensemble(None, "small", TrainConfig(batch_size=4), n_models=2, device="cuda"),
                      lambda event: messages.append(event.message))
    assert results == ["model 0 on cuda with batches of 4", "model 1 on cpu with batches of 1"]
    assert attempts == [(0, 4, "cuda"), (1, 4, "cuda"), (1, 2, "cuda"), (1, 1, "cuda"), (1, 1, "cpu")]
    retries = [m for m in messages if "out of memory" in m]
    assert retries == [
        "out of memory on cuda with 4 clips per batch: training this model again with 2",
        "out of memory on cuda with 2 clips per batch: training this model again with 1",
        "out of memory on cuda with one clip per batch: training this model again on the CPU (slower)",
    ]
    assert [r.getMessage() for r in caplog.records] == retries

    # other errors, and running out of memory with nothing smaller left, are not retried
    attempts.clear()
    with pytest.raises(torch.OutOfMemoryError):
        run(train.train_encoder_within_memory(None, "small", TrainConfig(batch_size=1, seed=2), device="cpu"))
    with pytest.raises(ValueError):
        run(train.train_encoder_within_memory(None, "small", TrainConfig(batch_size=4, seed=3), device="cuda"))
    assert attempts == [(2, 1, "cpu"), (3, 4, "cuda")]
