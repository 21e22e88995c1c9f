"""The training budget report (epochs run against planned, why training stopped, whether a time
budget starved it) and how promptly a training job stops or cancels mid-epoch."""

from __future__ import annotations

import threading
import time

import pytest

torch = pytest.importorskip("torch")

from movie_reconstruction.model.budget import (  # noqa: E402
    EARLY_STOPPING,
    EPOCH_LIMIT,
    STOPPED_BY_USER,
    TIME_BUDGET,
    describe_budget,
    stop_reason_of,
    summary_lines,
    training_summary_lines,
)
from movie_reconstruction.progress import run  # noqa: E402
from test_model import _model, simulated_recording  # noqa: E402


def _metrics(val_corr, *, seconds_per_epoch=60.0, max_epochs=40, max_minutes=20.0, stopped_because="",
             stop_reason=TIME_BUDGET, steps=10):
    """Training metrics as a checkpoint holds them, for a run whose epochs each took
    ``seconds_per_epoch``, a sixth of it validating."""
    history = [{"epoch": 0, "val_corr": val_corr[0], "seconds": 5.0, "validation_seconds": 5.0}]
    history += [{"epoch": k, "val_corr": r, "seconds": 5.0 + k * seconds_per_epoch, "steps": steps,
                 "validation_seconds": seconds_per_epoch / 6} for k, r in enumerate(val_corr[1:], start=1)]
    return {"history": history, "training": {"max_epochs": max_epochs, "max_minutes": max_minutes},
            "stopped_because": stopped_because, "stop_reason": stop_reason, "steps_per_epoch": steps,
            "best_val_corr": max(val_corr), "best_epoch": val_corr.index(max(val_corr))}


# ------------------------------------------------------------------------------ the report itself
def test_a_budget_cut_while_validation_still_rises_warns_with_the_time_it_would_take():
    budget = describe_budget(_metrics([0.0, 0.10, 0.18, 0.24, 0.28]))
    assert (budget.epochs_run, budget.epochs_planned, budget.stop_reason) == (4, 40, TIME_BUDGET)
    assert budget.seconds_per_epoch == pytest.approx(60.0)
    assert budget.recent_epochs == 3 and budget.recent_rise == pytest.approx(0.28 - 0.10)
    assert budget.starved and budget.more_epochs == 4  # as many again as it ran
    assert budget.more_minutes == pytest.approx(4.0)
    assert "4 of 40 planned epochs, 60 s each" in budget.sentence and "still rising" in budget.sentence
    assert "starved" in budget.warning and "about 4 more minutes" in budget.warning and "0.180" in budget.warning


def test_the_estimate_never_goes_beyond_the_planned_epochs():
    budget = describe_budget(_metrics([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], max_epochs=7, seconds_per_epoch=30.0))
    assert budget.more_epochs == 2 and budget.more_minutes == pytest.approx(1.0)


def test_a_partial_last_epoch_is_priced_by_its_steps():
    metrics = _metrics([0.0, 0.1, 0.2], seconds_per_epoch=60.0)
    metrics["history"][-1].update(steps=5, seconds=5.0 + 60.0 + 25.0 + 10.0)  # half the steps, then a validation
    assert describe_budget(metrics).seconds_per_epoch == pytest.approx(60.0)
    for epoch in metrics["history"]:  # written before validation times were recorded: the plain mean
        epoch.pop("validation_seconds")
    assert describe_budget(metrics).seconds_per_epoch == pytest.approx(95.0 / 2)


@pytest.mark.parametrize("val_corr, stop_reason", [
    ([0.0, 0.2, 0.25, 0.25, 0.249, 0.25], TIME_BUDGET),  # levelled off before the clock ran out
    ([0.0, 0.10, 0.18, 0.24, 0.28], EPOCH_LIMIT),
    ([0.0, 0.10, 0.18, 0.24, 0.28], EARLY_STOPPING),
    ([0.0, 0.10, 0.18, 0.24, 0.28], STOPPED_BY_USER),
])
def test_only_a_time_budget_that_cut_a_rising_curve_warns(val_corr, stop_reason):
    budget = describe_budget(_metrics(val_corr, stop_reason=stop_reason))
    assert not budget.starved and budget.warning == "" and budget.more_minutes == 0
    assert budget.stop_reason == stop_reason


def test_checkpoints_written_before_the_reason_was_recorded_read_it_from_the_text():
    assert stop_reason_of("reached the 20-minute wall budget") == TIME_BUDGET
    assert stop_reason_of("no better validation correlation for 6 epochs") == EARLY_STOPPING
    assert stop_reason_of("reached max_epochs") == EPOCH_LIMIT
    assert stop_reason_of("stopped by request") == STOPPED_BY_USER
    metrics = _metrics([0.0, 0.1, 0.2], stopped_because="reached the 20-minute wall budget", stop_reason=None)
    del metrics["steps_per_epoch"]
    assert describe_budget(metrics).starved
    assert describe_budget({}) is None
    assert summary_lines([("model_0", {})]) == ["model_0: no training record"]


# ------------------------------------------------------------------------------ real training runs
def test_a_starved_run_records_the_warning_in_its_checkpoint_and_summary(tmp_path):
    """Stopped by a 1.5-second budget after a few epochs while the tiny model is still learning fast."""
    from movie_reconstruction.model import TrainConfig, save_encoder, train_encoder
    from movie_reconstruction.model.checkpoint import read_checkpoint_config

    recording = simulated_recording(n_trials=6)
    training = TrainConfig(max_epochs=10_000, patience=10_000, steps_per_epoch=20, clip_frames=20, lr=1e-2,
                           max_minutes=0.025)
    result = run(train_encoder(recording, _model(), training))
    budget = result.budget
    assert budget.stop_reason == TIME_BUDGET and budget.epochs_planned == 10_000, result.history
    assert budget.starved and budget.more_epochs >= 1 and budget.more_minutes > 0, result.history
    folder = save_encoder(result.encoder, tmp_path / "model_0")
    saved = read_checkpoint_config(folder)["training_metrics"]["budget"]
    assert saved["warning"] == budget.warning and saved["more_epochs"] == budget.more_epochs
    lines = training_summary_lines([folder])
    assert lines[0].startswith("model_0: best validation r = ") and budget.sentence in lines[0]
    assert lines[1] == f"warning: model_0: {budget.warning}"
    assert "minutes per model instead of 0.025" in lines[2]
    assert summary_lines([("model_0", result.encoder.training_metrics)]) == lines  # the widget's way, in memory


@pytest.mark.parametrize("changes, reason", [
    (dict(max_epochs=2, patience=10), EPOCH_LIMIT),
    (dict(max_epochs=10, patience=1, lr=0.0), EARLY_STOPPING),  # nothing learns, so no epoch is better
])
def test_runs_that_end_on_their_epochs_do_not_warn(tmp_path, changes, reason):
    from movie_reconstruction.model import TrainConfig, save_encoder, train_encoder

    recording = simulated_recording(n_trials=4)
    training = TrainConfig(steps_per_epoch=3, clip_frames=20, max_minutes=30.0, **changes)
    result = run(train_encoder(recording, _model(), training))
    assert result.budget.stop_reason == reason and not result.budget.starved
    assert result.budget.epochs_run == len(result.history) - 1 and result.budget.seconds_per_epoch > 0
    lines = training_summary_lines([save_encoder(result.encoder, tmp_path / "model_0")])
    assert len(lines) == 1 and "warning" not in lines[0]


# ------------------------------------------------------------------------------ stopping mid-epoch
SLOW_STEP_SECONDS = 0.6  # longer than the progress interval: before, events came every 10 steps (6 s)


@pytest.fixture
def slow_steps(monkeypatch):
    """Training steps that take SLOW_STEP_SECONDS once ``slow_steps.set()`` is called."""
    from movie_reconstruction.model.training_data import TrialData

    slow = threading.Event()
    sample = TrialData.sample

    def slow_sample(self, *args, **kwargs):
        if slow.is_set():
            time.sleep(SLOW_STEP_SECONDS)
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(TrialData, "sample", slow_sample)
    return slow


def test_cancelling_mid_epoch_takes_effect_within_seconds(slow_steps):
    """As the napari worker cancels: it checks its flag after each event and then closes the job."""
    from movie_reconstruction.model import TrainConfig, train_encoder

    slow_steps.set()
    recording = simulated_recording(n_trials=4)
    job = train_encoder(recording, _model(), TrainConfig(max_epochs=3, steps_per_epoch=100, clip_frames=20))
    event = next(job)
    while event.metrics.get("epoch", 0) < 1:  # into the first epoch, which would take 60 s
        event = next(job)
    cancelled_at = time.perf_counter()
    event = next(job)  # the worker sees its cancel flag at the next event
    job.close()
    assert time.perf_counter() - cancelled_at < 5.0
    assert event.metrics["epoch"] == 1 and "val_corr" not in event.metrics  # still mid-epoch


def test_stop_early_mid_epoch_returns_promptly_with_the_best_model(slow_steps):
    from movie_reconstruction.model import TrainConfig, evaluate_encoder, train_encoder

    recording = simulated_recording(n_trials=5)
    stop = threading.Event()
    stopped_at = []

    def press_stop():
        stopped_at.append(time.perf_counter())
        stop.set()

    job = train_encoder(recording, _model(), TrainConfig(max_epochs=3, steps_per_epoch=20, clip_frames=20, lr=1e-2),
                        stop=stop)
    timer = None
    while True:
        try:
            event = next(job)
        except StopIteration as done:
            result = done.value
            break
        if event.metrics.get("epoch") == 1 and "val_corr" in event.metrics and timer is None:
            slow_steps.set()  # epoch 2 would take 12 s; stop it from another thread, as the widget does
            timer = threading.Timer(1.0, press_stop)
            timer.start()
    returned_at = time.perf_counter()
    timer.join()
    assert returned_at - stopped_at[0] < 5.0
    assert result.stopped_because == "stopped by request" and result.budget.stop_reason == STOPPED_BY_USER
    assert [h["epoch"] for h in result.history] == [0, 1]  # the half-trained epoch 2 was not kept
    kept = evaluate_encoder(result.encoder, recording, "validation")["single_trial"]
    assert kept == pytest.approx(result.best_val_corr, abs=1e-4)
    assert result.best_val_corr == max(h["val_corr"] for h in result.history)
