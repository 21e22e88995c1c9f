"""The HTML report: self-contained (figures and animation embedded), with every section a PI
expects, rendered from a results folder without recomputation."""

from __future__ import annotations

import base64
import io
import re

import numpy as np

from movie_reconstruction.report import write_report
from movie_reconstruction.results import ResultsFolder

from test_results import _write_trial, tiny_recording, untrained_checkpoints


def _folder(tmp_path, name="res"):
    from safetensors.numpy import save_file

    from movie_reconstruction.traces import RoiMask, Traces

    folder = ResultsFolder.create(tmp_path / name)
    for tid in (3, 8):
        _write_trial(folder, tid, frames=45)
    folder.write_controls({
        "trial_ids": [3, 8],
        "rows": [
            {"condition": "real", "mean_r": 0.5, "margin": 0.0, "control/real": 1.0},
            {"condition": "shuffled", "mean_r": 0.05, "margin": 0.45, "control/real": 0.1},
            {"condition": "time-reversed", "mean_r": 0.3, "margin": 0.2, "control/real": 0.6},
        ],
        "neuron_curve": [{"neurons": 10, "mean_r": 0.2, "per_trial": [0.1, 0.3]},
                         {"neurons": 40, "mean_r": 0.5, "per_trial": [0.45, 0.55]}],
    })
    rng = np.random.default_rng(1)
    for tid in (3, 8):  # a time-reversed "control" that is the real reconstruction itself: never beaten
        folder.write_control_movie("time-reversed", tid, folder.read_trial(tid).reconstruction + rng.normal(0, 1, (45, 36, 64)))
    mask = RoiMask(np.array([2, 2, 3]), np.array([2, 3, 2]), np.ones(3, np.float32))
    folder.write_rois([Traces(F=np.zeros((1, 5)), Fneu=np.zeros((1, 5)), spks=np.zeros((1, 5)), roi_masks=[mask],
                              roi_index=np.array([0]), cell_probability=np.array([1.0]), frame_shape=(16, 16),
                              mean_image=np.random.default_rng(0).uniform(0, 1, (16, 16)).astype(np.float32),
                              max_projection=None, frame_rate=30.0)])
    alpha = np.zeros((36, 64), np.float32)
    alpha[8:28, 16:48] = 1.2
    save_file({"alpha": alpha}, str(folder.mask_path))
    folder.record("reconstruct", seconds=12.5, device="cpu (2 threads)")
    from movie_reconstruction.evaluation import evaluate_results

    evaluate_results(folder.path)
    return folder


def test_report_is_self_contained_and_complete(tmp_path):
    from PIL import Image

    folder = _folder(tmp_path)
    path = write_report(folder.path)
    assert path == folder.path / "report.html"
    page = path.read_text()
    # nothing is fetched from elsewhere
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all(s.startswith("data:") for s in sources)
    assert "http://" not in page and "https://" not in page
    # reliability map, frames per trial (2), per-frame correlation, neuron curve, ROI map: PNGs; one GIF
    assert page.count("data:image/png;base64,") == 6
    gifs = re.findall(r'src="data:image/gif;base64,([^"]+)"', page)
    assert len(gifs) == 1
    animation = Image.open(io.BytesIO(base64.b64decode(gifs[0])))
    assert animation.n_frames == 45 and animation.size[0] > 2 * animation.size[1]
    for heading in ("Summary", "animated", "frame by frame", "Per-frame correlation", "Controls and the neuron-count curve",
                    "Training", "ROI map", "Provenance"):
        assert heading in page, heading
    # two 45-frame trials cannot reach p < 0.01, and the report says so instead of passing or failing them
    assert "Verdict: <b>cannot tell</b>" in page and "with 2 test trial(s)" in page and "time-reversed" in page
    assert page.index("Verdict:") < page.index("animated")  # the verdict table comes first
    assert "Identification" in page and "Temporal resolution" in page and "reliability map" in page
    assert (folder.path / "reliability_map.npy").is_file()
    assert "No training history" in page
    assert "0.580" in page  # trial 8's correlation in the summary table


def test_report_to_another_file_is_the_whole_report_with_names_escaped(tmp_path):
    """Written elsewhere, the report is still complete and self-contained, and the folder's name
    (which a user chooses, so it may hold HTML) is shown escaped, never as markup."""
    name = 'mouse <i>&"1"'  # a folder name cannot hold "/", so no closing tag
    folder = _folder(tmp_path, name)
    out = tmp_path / "elsewhere" / "mouse.html"
    assert write_report(folder.path, out) == out
    assert not (folder.path / "report.html").exists()
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    for heading in ("Summary", "animated", "frame by frame", "Per-frame correlation", "Controls and the neuron-count curve",
                    "Training", "ROI map", "Provenance", "Identification", "Temporal resolution"):
        assert heading in page, heading
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all(s.startswith("data:") for s in sources)
    assert page.count("data:image/png;base64,") == 6 and page.count("data:image/gif;base64,") == 1
    escaped = "mouse &lt;i&gt;&amp;&quot;1&quot;"
    assert f"<title>Movie reconstruction report · {escaped}</title>" in page
    assert escaped in page.split("<h1>", 1)[1]  # the folder's path under the heading
    assert "<i>&" not in page and name not in page


def test_the_training_section_gives_each_members_budget_and_warns_when_one_was_starved(tmp_path):
    from movie_reconstruction.model import load_encoder, save_encoder

    folder = _folder(tmp_path)
    tiny_recording(folder.recording_dir, neurons=30)
    rising, levelled = [0.0, 0.10, 0.18, 0.24, 0.28], [0.0, 0.25, 0.25, 0.25, 0.25]
    for path, curve in zip(untrained_checkpoints(folder, 2), (rising, levelled)):
        encoder = load_encoder(path)
        history = [{"epoch": k, "loss": 1.0, "val_corr": r, "seconds": 60.0 * k} for k, r in enumerate(curve)]
        encoder.training_metrics = {"history": history, "best_epoch": 4, "best_val_corr": curve[-1],
                                    "stopped_because": "reached the 4-minute wall budget",
                                    "training": {"max_epochs": 40, "max_minutes": 4.0, "seed": 0}}
        save_encoder(encoder, path)
    page = write_report(folder.path).read_text()
    training = page[page.index("<h2>Training</h2>"):page.index("<h2>ROI map")]
    assert training.count("4 of 40 planned epochs, 60 s each; stopped by the 4-minute time budget") == 2
    assert "model_0: 4 of 40 planned epochs" in training and "still rising" in training
    assert "model_1: 4 of 40 planned epochs" in training and "levelled off" in training
    assert training.count("Warning: ") == 1
    assert "Warning: model_0: the 4-minute time budget starved this model" in training
    assert "about 4 more minutes would buy 4 more epochs" in training
