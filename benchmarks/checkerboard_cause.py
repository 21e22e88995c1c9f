"""Where does the reconstructions' checkerboard come from? (issue 24)

One step's pixel gradient, split by component, on a results folder's trained encoders and
test trials. For each row, the spatial power spectrum of the gradient (frames >= 30, the
evaluation mask's bounding box, each frame's mean removed; ``reconstruct.artifacts``) gives
the share above 0.25 cycles/px and the share in the period-2 (Nyquist) rows and columns:

- ``whole encoder``: the Poisson NLL's gradient through the trained encoder;
- ``readout, stride-2 identity core``: the same upstream gradient of the drive (dL/d drive from
  the whole encoder) through the trained readout alone, the core replaced by the normalised
  movie sampled every second pixel (what a stride-2 core's grid looks like to the readout);
- ``readout, full-resolution identity core``: the same with the movie at full resolution;
- ``core alone``: the gradient of the sum of the core's features;
- ``core alone, stride 1 (a trous)``: the same core run at stride 1 with its blocks dilated by 2,
  which computes the stride-2 features at every pixel (the stride-2 map is its even sub-grid);
- ``whole encoder, stride 1 (a trous)``: the trained encoder with that core, reading the
  full-resolution features at the same places (no retraining);
- white noise in the same box, for scale.

Gradients are taken at the grey start (the first step) and at the stored reconstruction
(a late step). Also prints the artifact index of the stored reconstructions.

    PYTHONPATH=src python benchmarks/checkerboard_cause.py --results /tmp/demofull --markdown cause.md
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np


def load(results_path: Path):
    from movie_reconstruction.model import load_encoder
    from movie_reconstruction.results import load_results
    from movie_reconstruction.results_recording import open_recording

    results = load_results(results_path)
    recording = open_recording(results_path / "recording")
    models = [load_encoder(p, recording).eval().requires_grad_(False)
              for p in sorted((results_path / "models").glob("model_*"))]
    ids = {t.trial_id: t for t in results.trials}
    trials = [recording.trial(i) for i in range(len(recording)) if recording.trial(i).trial_id in ids]
    return models, trials, results.mask, [ids[t.trial_id].reconstruction for t in trials]


def a_trous(model):
    """The encoder with its stride-2 core run at stride 1 (blocks dilated by 2) and its read points
    moved half an input pixel, so it reads the same features at every pixel; same weights."""
    from torch import nn

    model = copy.deepcopy(model)
    stride = model.core.stem.stride[0]
    model.core.stem.stride = (1, 1)
    for block in model.core.blocks:
        for conv in block.spatial.modules() if isinstance(block.spatial, nn.Sequential) else [block.spatial]:
            if isinstance(conv, nn.Conv2d) and conv.kernel_size[0] > 1:
                conv.dilation = (stride, stride)
                conv.padding = (conv.padding[0] * stride, conv.padding[1] * stride)
    h, w = model.frame_shape
    # align_corners=False: a stride-2 feature cell sits on input pixel 2u, a full-resolution one on u,
    # so the same normalised read point lands half an input pixel further on the finer grid
    with __import__("torch").no_grad():
        model.readout.mu_offset -= model.readout.mu_offset.new_tensor([(stride - 1) / w, (stride - 1) / h])
    return model


def drive_and_rates(model, video, behavior):
    z = model._normalised_behavior(behavior)
    features = model.core(model._normalised_video(video))
    drive = model.readout(features, model._shift(z))
    return drive, model._rates(drive.float(), model._gain(z))


# long: one measurement per row of the table, each a few lines; splitting them hides the comparison
def gradient_rows(model, trial, movie) -> dict[str, np.ndarray]:
    import torch

    from movie_reconstruction.losses import get_loss
    from movie_reconstruction.reconstruct.config import ReconstructionConfig
    from movie_reconstruction.reconstruct.inputs import behavior_for

    loss_fn = get_loss(ReconstructionConfig().loss)
    video = torch.tensor(np.asarray(movie, np.float32))[None].requires_grad_(True)
    behavior = torch.from_numpy(behavior_for(model, trial))[None]
    target = torch.from_numpy(np.array(trial.responses, np.float32))[None]
    rows = {}
    drive, rates = drive_and_rates(model, video, behavior)
    grad_video, grad_drive = torch.autograd.grad(loss_fn(rates, target).sum(), (video, drive))
    rows["whole encoder"] = grad_video
    z = model._normalised_behavior(behavior)
    channels = model.readout.features.shape[1]
    for name, step in (("readout, stride-2 identity core", 2), ("readout, full-resolution identity core", 1)):
        features = model._normalised_video(video)[:, :, ::step, ::step]
        features = features.unsqueeze(2).expand(-1, -1, channels, -1, -1)
        (rows[name],) = torch.autograd.grad(model.readout(features, model._shift(z)), video, grad_drive)
    (rows["core alone"],) = torch.autograd.grad(model.core(model._normalised_video(video)).sum(), video)
    dense = a_trous(model)
    (rows["core alone, stride 1 (a trous)"],) = torch.autograd.grad(dense.core(dense._normalised_video(video)).sum(), video)
    _, dense_rates = drive_and_rates(dense, video, behavior)
    (rows["whole encoder, stride 1 (a trous)"],) = torch.autograd.grad(loss_fn(dense_rates, target).sum(), video)
    rows["white noise"] = torch.randn_like(video)
    return {k: v[0].detach().numpy() for k, v in rows.items()}


def shares(field, mask) -> tuple[float, float]:
    from movie_reconstruction.reconstruct.artifacts import power_shares, spatial_power

    return power_shares(spatial_power(field, mask))


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from movie_reconstruction.reconstruct.artifacts import artifact_index

    models, trials, mask, reconstructions = load(args.results)
    table: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for trial, reconstruction in zip(trials, reconstructions):
        for where, movie in (("grey start", np.full(trial.video.shape, 128.0)), ("reconstruction", reconstruction)):
            for model in models:
                for name, grad in gradient_rows(model, trial, movie).items():
                    table.setdefault((name, where), []).append(shares(grad, mask))
    lines = ["| gradient of one step | at | share above 0.25 cycles/px | Nyquist share |", "|---|---|---|---|"]
    for (name, where), values in table.items():
        high, nyquist = np.mean(values, axis=0)
        lines.append(f"| {name} | {where} | {high:.3f} | {nyquist:.3f} |")
    lines += ["", "| trial | artifact index | Nyquist share: reconstruction / stimulus |", "|---|---|---|"]
    for trial, reconstruction in zip(trials, reconstructions):
        index = artifact_index(reconstruction, trial.video, mask)
        lines.append(f"| {trial.trial_id} | {index.artifact_index:.2f} | {index.nyquist_share:.3f} / "
                     f"{index.stimulus_nyquist_share:.3f} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
