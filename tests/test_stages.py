"""The stage API's paths that only some front ends use: the learned and full-frame masks of the
train stage, stopping training early from a widget's button, and the controls stage's names."""

from __future__ import annotations

import json
import threading

import pytest

from movie_reconstruction.model import TrainConfig
from movie_reconstruction.pipeline import PipelineSettings, train_stage, with_changes
from movie_reconstruction.progress import run
from movie_reconstruction.reconstruct.mask import load_mask
from movie_reconstruction.results import ResultsFolder

from test_results import tiny_recording

TINY = TrainConfig(max_epochs=2, steps_per_epoch=3, batch_size=2, clip_frames=30)


@pytest.fixture
def results(tmp_path):
    folder = ResultsFolder.create(tmp_path / "results")
    tiny_recording(folder.recording_dir, n_trials=8, n_test=2, frames=40, neurons=20)
    return folder


@pytest.mark.parametrize("method,saved", [("learned", "learned (ensemble mean)"), ("none", "full")])
def test_the_train_stage_writes_the_chosen_mask(results, method, saved):
    settings = with_changes(PipelineSettings(), n_models=2, device="cpu", training=TINY, mask_method=method)
    events = []
    checkpoints = run(train_stage(results, settings), events.append)
    assert len(checkpoints) == 2
    mask = load_mask(results.mask_path)
    assert mask.method == saved
    if method == "none":
        assert (mask.alpha == 1).all()
    else:
        assert mask.alpha.std() > 0 and any(e.stage.startswith("mask 2/2") for e in events)
    assert results.provenance()["settings"]["train"]["mask_method"] == method


def test_stop_early_keeps_the_member_in_training_and_skips_the_rest(results):
    stop = threading.Event()
    settings = with_changes(PipelineSettings(), n_models=3, device="cpu", training=TINY.replace(max_epochs=50))
    job = train_stage(results, settings, stop=stop)

    def on_progress(event):
        if event.context.get("member") == 0 and event.metrics.get("epoch", 0) >= 1:
            stop.set()  # what the widget's "Stop early (keep best)" button does

    checkpoints = run(job, on_progress)
    assert [p.name for p in checkpoints] == ["model_0"]  # members 2 and 3 were not started
    metrics = json.loads((checkpoints[0] / "config.json").read_text())["training_metrics"]
    assert metrics["stopped_because"] == "stopped by request" and metrics["epochs"] < 50
