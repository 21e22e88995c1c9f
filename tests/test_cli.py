"""``movie-recon``: every subcommand's error path gives one clear line and a non-zero exit;
a small train -> reconstruct -> evaluate -> report run works and resumes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from movie_reconstruction.cli import EXIT_INPUT, EXIT_USAGE, build_parser, main
from movie_reconstruction.results import ResultsFolder

from test_results import tiny_recording, untrained_checkpoints

SUBCOMMANDS = ("demo", "extract", "build", "train", "reconstruct", "evaluate", "report", "info")


def _fails(capsys, argv, *fragments, code=EXIT_INPUT):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, f"expected one line, got:\n{err}"
    assert err.startswith(f"movie-recon {argv[0]}: ")
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and f"movie-recon {command}" in out


def test_usage_errors_exit_2(capsys):
    assert main([]) == EXIT_USAGE
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct"])  # the results folder is required
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["reconstruct", "x", "--trials", "a,b"])


@pytest.fixture
def bad_manifest(tmp_path):
    path = tmp_path / "session.toml"
    path.write_text("[session]\nname = 'm1'\n[imaging]\nraw = 'raw/missing.tif'\nframe_times = 't.npy'\n")
    return path


def test_extract_and_build_errors(tmp_path, capsys, bad_manifest):
    _fails(capsys, ["extract", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "r")], "nope.toml", "not found")
    _fails(capsys, ["extract", str(bad_manifest), "-o", str(tmp_path / "r")], "session.toml", "missing [stimulus] section")
    broken = tmp_path / "broken.toml"
    broken.write_text("[session\nname=")
    _fails(capsys, ["extract", str(broken), "-o", str(tmp_path / "r")], "broken.toml", "not valid TOML")
    # a missing raw file is named before the missing frame rate, and nothing is written
    fresh = tmp_path / "fresh"
    _fails(capsys, ["extract", str(tmp_path / "raw.tif"), "-o", str(fresh)], f"{tmp_path / 'raw.tif'}: not found")
    _fails(capsys, ["extract", str(bad_manifest), str(tmp_path / "b.tif"), "-o", str(fresh)], "b.tif: not found")
    _fails(capsys, ["build", str(bad_manifest), "-o", str(fresh), "--suite2p", str(tmp_path / "s2p")], "s2p: not found")
    assert not fresh.exists()
    (tmp_path / "raw.tif").write_bytes(b"x")
    _fails(capsys, ["extract", str(tmp_path / "raw.tif"), "-o", str(tmp_path / "r")], "--fs")
    _fails(capsys, ["build", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "r")], "nope.toml", "not found")
    _fails(capsys, ["build", str(bad_manifest), "-o", str(tmp_path / "r")], "missing [stimulus] section")
    # a results path that is someone's data folder is refused before anything is written
    data = tmp_path / "data"
    data.mkdir()
    (data / "stack.tif").write_bytes(b"x")
    _fails(capsys, ["build", str(bad_manifest), "-o", str(data)], "not a results folder")
    _fails(capsys, ["demo", "-o", str(data), "--scheduler", "none"], "not a results folder")
    assert sorted(p.name for p in data.iterdir()) == ["stack.tif"]


def test_train_reconstruct_evaluate_report_info_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    _fails(capsys, ["train", str(empty), "--scheduler", "none"], "recording folder not found")
    _fails(capsys, ["train", str(empty), "--recording", str(tmp_path / "nope"), "--scheduler", "none"], "nope")
    _fails(capsys, ["reconstruct", str(empty), "--scheduler", "none"], "recording folder not found")
    results = ResultsFolder.create(tmp_path / "res")
    tiny_recording(results.recording_dir)
    _fails(capsys, ["reconstruct", str(results.path), "--scheduler", "none"], "no trained models")
    _fails(capsys, ["evaluate", str(results.path)], "no reconstructed trials")
    _fails(capsys, ["evaluate", str(tmp_path / "nope")], "results folder not found")
    _fails(capsys, ["report", str(tmp_path / "nope")], "results folder not found")
    _fails(capsys, ["info", str(tmp_path / "nope")], "results folder not found")
    _fails(capsys, ["train", str(results.path), "--scheduler", "tcp://127.0.0.1:1"], "cannot connect")


def test_mismatched_checkpoint_is_refused(tmp_path, capsys):
    results = ResultsFolder.create(tmp_path / "res")
    tiny_recording(results.recording_dir, neurons=30)
    untrained_checkpoints(results, 1)
    other = tiny_recording(tmp_path / "other", neurons=25, seed=1)
    _fails(capsys, ["reconstruct", str(results.path), "--recording", str(other), "--scheduler", "none"],
           "model_0", "predicts 30 neurons but the recording has 25")
    # a tampered checkpoint is refused too
    weights = results.model_dir(0) / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    _fails(capsys, ["reconstruct", str(results.path), "--scheduler", "none"], "weights.safetensors", "modified or corrupt")


def test_small_run_resumes_and_reports(tmp_path, capsys):
    results = ResultsFolder.create(tmp_path / "res")
    tiny_recording(results.recording_dir, n_trials=7, n_test=2)
    common = ["--scheduler", "none", "--threads", "1", "-q", "--device", "cpu"]
    assert main(["train", str(results.path), "--models", "2", "--epochs", "1", *common]) == 0
    out = capsys.readouterr().out
    assert "2 model(s)" in out and "best validation r" in out
    assert out.count("1 of 1 planned epochs") == 2 and "ran all planned epochs" in out

    argv = ["reconstruct", str(results.path), "--iterations", "4", "--no-controls", *common]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("masked r =") == 2
    trial_files = sorted(results.path.glob("reconstructions/trial_*/trial.json"))
    assert len(trial_files) == 2
    stamps = [p.stat().st_mtime_ns for p in trial_files]

    # re-running resumes: nothing is redone
    assert main(argv) == 0
    assert "2 trial(s) were already done" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in trial_files] == stamps

    # other settings: refused unless --overwrite
    _fails(capsys, ["reconstruct", str(results.path), "--iterations", "5", "--no-controls", *common], "--overwrite")
    assert main(["evaluate", str(results.path), "--drop-frames", "10"]) == 0
    out = capsys.readouterr().out
    assert "mean masked r" in out and "identification: top-1" in out and "temporal resolution" in out
    metrics = json.loads((results.path / "metrics.json").read_text())
    assert metrics["summary"]["drop_frames"] == 10 and len(metrics["trials"]) == 2
    statistics = metrics["summary"]["statistics"]
    assert statistics["identification"]["candidates"] >= 2 + 50 and statistics["spatial_resolution"]["unit"] == "cycles/pixel"  # no degrees per pixel in this folder
    assert "static" in metrics["trials"][0] and (results.path / "reliability_map.npy").is_file()
    assert main(["report", str(results.path)]) == 0
    assert (results.path / "report.html").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["info", str(results.path)]) == 0
    out = capsys.readouterr().out
    assert "models: 2" in out and "reconstructions: 2 trial(s)" in out and "report:" in out
    prov = json.loads((results.path / "provenance.json").read_text())
    assert {"train", "reconstruct"} <= set(prov["timings_s"]) and prov["seeds"]["training"] == [0, 1]


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "movie_reconstruction.cli", "--version"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("movie-recon ")
    proc = subprocess.run([sys.executable, "-m", "movie_reconstruction.cli", "report", "/nonexistent/results"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip() == "movie-recon report: /nonexistent/results: results folder not found"


def test_front_end_modules_import_light():
    """The CLI, pipeline, results, distributed and report modules import no torch, suite2p, Qt or napari."""
    code = (
        "import sys, movie_reconstruction.cli, movie_reconstruction.pipeline, movie_reconstruction.results, "
        "movie_reconstruction.distributed, movie_reconstruction.report; "
        "print(sorted(m for m in ('torch', 'suite2p', 'napari', 'PyQt6', 'qtpy', 'distributed') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_quick_demo_log_is_short_and_ends_with_the_results(tmp_path):
    """Written to a file (a batch job, a log): plain progress lines, no dependency chatter, and the
    results and the report's path at the end."""
    out, log = tmp_path / "demo", tmp_path / "log.txt"
    with log.open("w") as stream:
        proc = subprocess.run([sys.executable, "-m", "movie_reconstruction.cli", "demo", "--quick", "-o", str(out)],
                              stdout=stream, stderr=subprocess.STDOUT, timeout=1800)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    lines = text.splitlines()
    assert len(lines) < 200 and "\r" not in text and "\x1b" not in text
    assert "pynwb" not in text and "Warning" not in text, text
    assert lines[-1] == f"report: {out / 'report.html'}"
    results = [k for k, line in enumerate(lines) if line.startswith("trial ") and "masked r =" in line]
    progress = [k for k, line in enumerate(lines) if line.startswith(("train:", "reconstruct:", "controls:"))]
    assert results and progress and min(results) > max(progress)  # the results come after all progress
    assert any(line.startswith("overall: ") for line in lines[max(results):])  # then the verdict
    assert any(line.startswith("train: done") for line in lines)
