"""Snapshot ensembles: one training run whose learning-rate schedule (a main phase, then short
cycles restarting at a fraction of the peak) yields the ensemble's members; the schedule's shape,
the members a run makes and keeps when stopped, and the setting's way from the command line and
the widget to the train stage."""

from __future__ import annotations

import json
import math
import threading

import pytest

from movie_reconstruction.model.config import TrainConfig
from movie_reconstruction.model.snapshots import LR_FLOOR, learning_rate_schedule, phase_epochs

STEPS = 10  # steps per epoch in the schedule tests


# ------------------------------------------------------------------------------ the schedule (no torch)
def test_the_epochs_split_into_a_main_phase_and_one_short_cycle_per_further_member():
    assert phase_epochs(40, 3, 0.15) == [28, 6, 6]
    assert phase_epochs(20, 3, 0.15) == [14, 3, 3]
    assert phase_epochs(40, 1, 0.15) == [40]
    # many members: the cycles together keep to half the budget, so the main phase keeps the rest
    epochs = phase_epochs(40, 7, 0.15)
    assert sum(epochs) == 40 and epochs[0] >= 20 and len(epochs) == 7
    assert phase_epochs(3, 3, 0.15) == [1, 1, 1]
    with pytest.raises(ValueError, match="at least 3 epochs"):
        phase_epochs(2, 3, 0.15)


def test_each_cycle_restarts_the_learning_rate_and_decays_it_again():
    training = TrainConfig(max_epochs=20, warmup_epochs=1.0)
    schedule = learning_rate_schedule(STEPS, training, members=3)
    assert schedule.end_steps == (140, 170, 200) and schedule.end_fractions == pytest.approx((0.7, 0.85, 1.0))
    factors = [schedule.factor(step) for step in range(200)]
    # warm-up over the first epoch, then down to the floor by the end of the main phase
    assert factors[0] == pytest.approx(1 / STEPS) and factors[STEPS] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[STEPS:140], factors[STEPS + 1:140]))
    assert factors[139] < 0.06
    for start, end in ((140, 170), (170, 200)):
        assert factors[start] == pytest.approx(training.snapshot_restart_lr)  # the restart
        assert factors[start] > 4 * factors[start - 1]
        cycle = factors[start:end]
        assert all(a > b for a, b in zip(cycle, cycle[1:]))  # decays within the cycle
        assert cycle[-1] == pytest.approx(LR_FLOOR, abs=0.01)
    assert [schedule.phase(s) for s in (0, 139, 140, 169, 170, 199, 250)] == [0, 0, 1, 1, 2, 2, 2]


def test_under_a_time_budget_the_phases_are_shares_of_the_clock():
    schedule = learning_rate_schedule(STEPS, TrainConfig(max_epochs=20, max_minutes=10.0), members=3)
    # few steps done, but 70 % of the minutes gone: the first cycle has begun, at its restart
    assert schedule.phase(30, 0.69) == 0 and schedule.phase(30, 0.71) == 1
    assert schedule.factor(30, 0.7) == pytest.approx(0.3)
    assert schedule.factor(30, 0.849) == pytest.approx(LR_FLOOR, abs=0.01)
    assert schedule.phase(30, 0.86) == 2 and schedule.phase(30, 1.2) == 2


def test_one_member_keeps_the_single_run_schedule():
    """warm-up, then cosine to 5 % over the steps or the clock, whichever runs out first (as before)."""
    training = TrainConfig(max_epochs=4, warmup_epochs=0.5)
    schedule = learning_rate_schedule(STEPS, training)
    warmup, total = 5, 40
    for step in range(total):
        for time_fraction in (None, 0.3, 0.9):
            progress = (step - warmup) / (total - warmup)
            if time_fraction is not None:
                progress = max(progress, time_fraction)
            expected = (step + 1) / warmup if step < warmup else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1, progress)))
            assert schedule.factor(step, time_fraction) == pytest.approx(expected)


# ------------------------------------------------------------------------------ snapshot runs
torch = pytest.importorskip("torch")

from movie_reconstruction.model.budget import SNAPSHOT, STOPPED_BY_USER  # noqa: E402
from movie_reconstruction.progress import run  # noqa: E402
from test_model import _model, simulated_recording  # noqa: E402

# five epochs of three steps: a main phase of three epochs and two one-epoch cycles; patience 1
# would end a single run after its first epoch without a gain
QUICK = TrainConfig(max_epochs=5, steps_per_epoch=3, clip_frames=20, lr=1e-2, patience=1)


def _run_snapshots(recording, training=QUICK, stop_when=None, **kwargs):
    from movie_reconstruction.model import train_encoder

    events, stop = [], threading.Event()

    def on_event(event):
        events.append(event)
        if stop_when is not None and stop_when(event):
            stop.set()

    result = run(train_encoder(recording, _model(), training, snapshots=3, stop=stop, **kwargs), on_event)
    return result, events


def test_a_snapshot_run_makes_three_different_loadable_members(tmp_path):
    from movie_reconstruction.model import load_encoder, save_encoder, summary_lines

    recording = simulated_recording(n_trials=5)
    result, events = _run_snapshots(recording)
    members = result.members
    assert len(members) == 3 and result.encoder is members[-1].encoder
    assert [len(m.history) - 1 for m in members] == [3, 4, 5]  # epochs up to each snapshot
    for k, member in enumerate(members):
        metrics = member.encoder.training_metrics
        assert metrics["snapshot"]["member"] == k and metrics["snapshot"]["members"] == 3
        assert metrics["stop_reason"] == SNAPSHOT and metrics["best_val_corr"] == member.history[-1]["val_corr"]
        assert f"snapshot {k + 1} of 3" in member.budget.sentence and not member.budget.starved
    loaded = [load_encoder(save_encoder(m.encoder, tmp_path / f"model_{k}"), recording) for k, m in enumerate(members)]
    weights = [torch.cat([p.detach().flatten() for p in model.parameters()]) for model in loaded]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not torch.allclose(weights[a], weights[b]), (a, b)
    # the progress said which snapshot was being made
    made = {(e.context.get("member"), e.context.get("members")) for e in events if e.context.get("snapshot")}
    assert made == {(0, 3), (1, 3), (2, 3)}
    lines = summary_lines([(f"model_{k}", m.encoder.training_metrics) for k, m in enumerate(members)])
    assert "snapshot 1 of 3: the end of the main phase" in lines[0] and "cycle 2" in lines[2]


def test_a_snapshot_validates_to_its_recorded_correlation():
    from movie_reconstruction.model import evaluate_encoder

    recording = simulated_recording(n_trials=5)
    result, _ = _run_snapshots(recording)
    for member in result.members:
        kept = evaluate_encoder(member.encoder, recording, "validation")["single_trial"]
        assert kept == pytest.approx(member.best_val_corr, abs=1e-4)


def test_a_stop_after_the_first_snapshot_keeps_it():
    recording = simulated_recording(n_trials=5)
    # two-epoch cycles, so that the stop comes inside the first one whichever event brings it
    training = QUICK.replace(max_epochs=8, snapshot_cycle_fraction=0.25)
    result, _ = _run_snapshots(recording, training, stop_when=lambda e: e.context.get("member") == 1)
    assert len(result.members) == 1
    kept = result.members[0].encoder.training_metrics
    assert kept["stop_reason"] == SNAPSHOT and kept["snapshot"]["member"] == 0 and kept["epochs"] == 4


def test_a_stop_before_any_snapshot_keeps_the_best_validated_state_as_member_0():
    recording = simulated_recording(n_trials=5)
    result, _ = _run_snapshots(recording, stop_when=lambda e: e.metrics.get("epoch", 0) >= 1 and "val_corr" in e.metrics)
    assert len(result.members) == 1
    kept = result.members[0].encoder.training_metrics
    assert kept["stop_reason"] == STOPPED_BY_USER and kept["snapshot"]["member"] == 0
    assert kept["best_val_corr"] == max(h["val_corr"] for h in result.history)
    assert "snapshot 1 of 3: stopped by the user" in result.members[0].budget.sentence


def test_a_time_budget_ends_the_phases_on_the_clock():
    """A budget far shorter than the epochs: every phase ends by its share of the clock."""
    recording = simulated_recording(n_trials=5)
    # phases of 3, 1.5 and 1.5 s: far longer than a validation of the tiny model, even on a busy machine
    training = TrainConfig(max_epochs=10_000, steps_per_epoch=3, clip_frames=20, lr=1e-2, patience=1,
                           max_minutes=0.1, snapshot_cycle_fraction=0.25)
    result, _ = _run_snapshots(recording, training)
    assert len(result.members) == 3
    assert [m.encoder.training_metrics["snapshot"]["ended_by"] for m in result.members] == ["time budget"] * 3
    seconds = [m.seconds for m in result.members]
    assert seconds[0] < seconds[1] < seconds[2] and seconds[0] == pytest.approx(0.5 * 6.0, abs=1.5)


# ------------------------------------------------------------------------------ the stage, the command line
@pytest.fixture
def results(tmp_path):
    from movie_reconstruction.results import ResultsFolder
    from test_results import tiny_recording

    folder = ResultsFolder.create(tmp_path / "results")
    tiny_recording(folder.recording_dir, n_trials=8, n_test=2, frames=40, neurons=20)
    return folder


STAGE_TRAINING = TrainConfig(max_epochs=3, steps_per_epoch=2, batch_size=2, clip_frames=30)


def test_the_train_stage_trains_a_snapshot_ensemble_as_one_unit(results, monkeypatch):
    from movie_reconstruction import distributed
    from movie_reconstruction.pipeline import PipelineSettings, train_stage, with_changes

    threads = []
    real_threads = distributed.torch_threads
    monkeypatch.setattr(distributed, "available_cores", lambda: 2)
    monkeypatch.setattr(distributed, "torch_threads", lambda n: threads.append(n) or real_threads(n))
    settings = with_changes(PipelineSettings(), n_models=3, device="cpu", training=STAGE_TRAINING,
                            ensemble_method="snapshots", threads=3)
    events = []
    checkpoints = run(train_stage(results, settings), events.append)
    assert [p.name for p in checkpoints] == ["model_0", "model_1", "model_2"]
    assert threads == [2]  # the three workers' threads, capped at the machine's cores
    members = [json.loads((p / "config.json").read_text())["training_metrics"]["snapshot"]["member"] for p in checkpoints]
    assert members == [0, 1, 2]
    assert any("snapshot 2/3" in e.message for e in events)
    assert results.provenance()["settings"]["train"]["ensemble_method"] == "snapshots"

    stamps = [(p / "config.json").stat().st_mtime_ns for p in checkpoints]
    events.clear()
    run(train_stage(results, settings), events.append)  # the same settings: nothing is retrained
    assert [(p / "config.json").stat().st_mtime_ns for p in checkpoints] == stamps
    assert any("already trained" in e.message for e in events)

    import shutil

    shutil.rmtree(checkpoints[2])  # one member missing: the whole run again
    run(train_stage(results, settings))
    assert (checkpoints[2] / "config.json").is_file()
    assert (checkpoints[0] / "config.json").stat().st_mtime_ns != stamps[0]


def test_an_independent_ensemble_does_not_take_snapshots_for_its_members(results):
    from movie_reconstruction.pipeline import PipelineSettings, train_stage, with_changes

    snapshots = with_changes(PipelineSettings(), n_models=2, device="cpu", training=STAGE_TRAINING,
                             ensemble_method="snapshots", threads=1)
    first = run(train_stage(results, snapshots))
    stamps = [(p / "config.json").stat().st_mtime_ns for p in first]
    independent = with_changes(snapshots, ensemble_method="independent")
    checkpoints = run(train_stage(results, independent))
    assert all((p / "config.json").stat().st_mtime_ns != s for p, s in zip(checkpoints, stamps))
    for p in checkpoints:
        assert "snapshot" not in json.loads((p / "config.json").read_text())["training_metrics"]


def test_stop_early_in_a_snapshot_stage_keeps_what_was_made(results):
    from movie_reconstruction.pipeline import PipelineSettings, train_stage, with_changes

    stop = threading.Event()
    settings = with_changes(PipelineSettings(), n_models=3, device="cpu", training=STAGE_TRAINING.replace(max_epochs=30),
                            ensemble_method="snapshots", threads=1)

    def on_progress(event):
        if event.context.get("snapshot") and event.metrics.get("epoch", 0) >= 1:
            stop.set()  # during the main phase: no snapshot yet

    checkpoints = run(train_stage(results, settings, stop=stop), on_progress)
    assert [p.name for p in checkpoints] == ["model_0"]
    metrics = json.loads((checkpoints[0] / "config.json").read_text())["training_metrics"]
    assert metrics["stop_reason"] == STOPPED_BY_USER and metrics["epochs"] < 30


def test_the_command_line_option_reaches_the_stage(tmp_path, capsys):
    from movie_reconstruction.cli import main
    from movie_reconstruction.results import ResultsFolder
    from test_results import tiny_recording

    results = ResultsFolder.create(tmp_path / "res")
    tiny_recording(results.recording_dir, n_trials=7, n_test=2)
    argv = ["train", str(results.path), "--models", "3", "--epochs", "3", "--ensemble-method", "snapshots",
            "--scheduler", "none", "--threads", "1", "-q", "--device", "cpu", "--preset", "fast"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 model(s)" in out
    for k in range(3):
        assert f"model_{k}: validation r = " in out and f"snapshot {k + 1} of 3" in out
    assert results.provenance()["settings"]["train"]["ensemble_method"] == "snapshots"


def test_too_few_epochs_for_the_members_is_one_clear_error(results):
    from movie_reconstruction.errors import InputError
    from movie_reconstruction.pipeline import PipelineSettings, train_stage, with_changes

    settings = with_changes(PipelineSettings(), n_models=3, training=STAGE_TRAINING.replace(max_epochs=2),
                            ensemble_method="snapshots")
    with pytest.raises(InputError, match="needs at least 3 epochs"):
        run(train_stage(results, settings))


def test_the_snapshot_run_gets_the_threads_of_all_workers():
    from movie_reconstruction.settings import PipelineSettings
    from movie_reconstruction.stages.train import snapshot_threads

    class Client:
        def scheduler_info(self):
            return {"workers": {name: {"nthreads": 2} for name in "abc"}}

    assert snapshot_threads(PipelineSettings(threads=1), Client()) == 3
    assert snapshot_threads(PipelineSettings(), Client()) == 6
    assert snapshot_threads(PipelineSettings(threads=2), None) == 2
    assert snapshot_threads(PipelineSettings(), None) is None


def test_the_setting_is_in_the_train_widget_and_the_docs():
    pytest.importorskip("magicgui")
    from pathlib import Path

    from movie_reconstruction._widgets.train import advanced_settings
    from movie_reconstruction.settings import setting_infos, settings_table

    shown = {info.name for info in advanced_settings()}
    assert "ensemble_method" in shown
    assert {i.name for i in setting_infos(("train",)) if i.advanced} - {"init_core"} <= shown
    docs = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text(encoding="utf-8")
    assert "`ensemble_method` | `--ensemble-method`" in docs and settings_table() in docs


def test_the_front_ends_name_the_snapshot_being_made():
    from movie_reconstruction._widgets._job_status import member_words, status_line
    from movie_reconstruction.progress import Progress

    assert member_words({"member": 1, "members": 3, "snapshot": True}) == "snapshot 2/3"
    assert member_words({"member": 1, "members": 3}) == "model 2/3"
    line = status_line(Progress("train", 500, 1000, "x", context={"member": 0, "members": 3, "snapshot": True}))
    assert "snapshot 1/3" in line and "50%" in line


def test_a_settings_file_chooses_the_method_and_refuses_others(tmp_path):
    from movie_reconstruction.errors import InputError
    from movie_reconstruction.settings import read_settings_file

    path = tmp_path / "s.toml"
    path.write_text('ensemble_method = "snapshots"\n[training]\nsnapshot_cycle_fraction = 0.2\n')
    settings = read_settings_file(path)
    assert settings.ensemble_method == "snapshots" and settings.training.snapshot_cycle_fraction == 0.2
    path.write_text('ensemble_method = "swa"\n')
    with pytest.raises(InputError, match="ensemble_method must be one of"):
        read_settings_file(path)


def test_a_snapshot_ensemble_trains_as_one_task_on_a_dask_cluster(results):
    """The members come back from the worker as one task's result and are written here."""
    pytest.importorskip("distributed")
    from movie_reconstruction.distributed import dask_client
    from movie_reconstruction.pipeline import PipelineSettings, train_stage, with_changes

    settings = with_changes(PipelineSettings(), n_models=2, device="cpu", training=STAGE_TRAINING,
                            ensemble_method="snapshots", threads=1)
    with dask_client(n_workers=2, threads_per_worker=1, processes=True) as client:
        checkpoints = run(train_stage(results, settings, client=client))
    assert [p.name for p in checkpoints] == ["model_0", "model_1"]
    configs = [json.loads((p / "config.json").read_text()) for p in checkpoints]
    assert [c["training_metrics"]["snapshot"]["member"] for c in configs] == [0, 1]
    assert all(c["extra"]["worker"].startswith("tcp://") for c in configs)  # it really ran on the cluster
