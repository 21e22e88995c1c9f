"""What a reconstruction step saves by computing the fixed parts once (``Encoder.prepare``).

One pixel-gradient step (forward + backward to the pixels, parameters frozen) of one encoder
on one 300-frame trial, four ways, in one run: the plain forward pass; the readout at fixed
read points only (``changing=None``: sparse sampling matrices, no surround); the core's fixed
surround only (sampling matrices disabled); and both, as reconstruction uses them. Each way is
timed over the same steps, interleaved round by round so that a noisy neighbour hits them all
alike, and checked against the plain pass (largest difference in rates and in the pixel
gradient inside the update mask, relative to the largest value).

Encoders (``--model``): a preset with random weights and the twin dataset's neurons and
positions (the right cost, meaningless values), or trained checkpoints (``--checkpoints``).
The update mask is a results folder's (``--mask``) or the central box of the twin's receptive
fields. Example::

    PYTHONPATH=src python benchmarks/prepared_forward.py --checkpoints runs/twin/models/model_0 \\
        --mask runs/twin/mask.safetensors --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    import torch

    from reconstruct_quality import load_trials, publish
    from reconstruct_twin import default_paths

    from movie_reconstruction.model import Encoder, EncoderConfig, load_encoder, readout
    from movie_reconstruction.reconstruct.mask import load_mask
    from movie_reconstruction.reconstruct.inputs import behavior_for

    _, dataset = default_paths()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=dataset)
    parser.add_argument("--model", choices=("small", "fast"), default="small", help="preset, when no checkpoint is given")
    parser.add_argument("--checkpoints", type=Path, default=None, help="a trained encoder folder instead")
    parser.add_argument("--mask", type=Path, default=None, help="a saved mask; default: rows 7-25, columns 21-41")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per way")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    recording, (trial,) = load_trials(args.dataset, 1, None)
    if args.checkpoints:
        encoder = load_encoder(args.checkpoints, recording)
        name = str(args.checkpoints)
    else:
        torch.manual_seed(0)
        encoder = Encoder(recording.n_neurons, recording.frame_shape, recording.behavior_channels,
                          EncoderConfig.preset(args.model), neuron_positions=recording.neurons.positions)
        name = f"{args.model} preset, random weights"
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    if args.mask:
        changing = torch.from_numpy(load_mask(args.mask).update)
    else:
        changing = torch.zeros(recording.frame_shape, dtype=torch.bool)
        changing[7:26, 21:42] = True

    behavior = torch.from_numpy(behavior_for(encoder, trial))[None]
    start = torch.full((1, trial.n_frames, *recording.frame_shape), 128.0)
    video = start.clone()
    video[:, :, changing] = torch.from_numpy(trial.video[:, changing.numpy()].astype(np.float32))
    target = torch.tensor(np.asarray(trial.responses, np.float32))[None]  # a copy: trials may be read-only maps
    budget = readout.SAMPLING_MATRIX_BUDGET_BYTES

    def prepared(matrices: bool, region):
        readout.SAMPLING_MATRIX_BUDGET_BYTES = budget if matrices else 0
        try:
            began = time.perf_counter()
            forward = encoder.prepare(start, behavior, region)
            return forward, time.perf_counter() - began
        finally:
            readout.SAMPLING_MATRIX_BUDGET_BYTES = budget

    ways = {"plain forward": (lambda v: encoder(v, behavior), 0.0)}
    ways["readout at fixed read points"] = prepared(True, None)
    ways["fixed surround of the core"] = prepared(False, changing)
    ways["both (what reconstruction uses)"] = prepared(True, changing)
    surround = ways["both (what reconstruction uses)"][0].surround

    def step(forward):
        pixels = video.clone().requires_grad_(True)
        rates = forward(pixels)
        loss = (rates - target * torch.log(rates + 1e-6)).mean()
        (grad,) = torch.autograd.grad(loss, pixels)
        return rates.detach(), grad[:, :, changing]

    reference_rates, reference_grad = step(ways["plain forward"][0])
    errors = {}
    for label, (forward, _) in ways.items():
        rates, grad = step(forward)  # also the warm-up
        errors[label] = (
            float((rates - reference_rates).abs().max() / reference_rates.abs().max()),
            float((grad - reference_grad).abs().max() / reference_grad.abs().max()),
        )
    seconds = {label: 0.0 for label in ways}
    for _ in range(args.rounds):
        for label, (forward, _) in ways.items():
            began = time.perf_counter()
            for _ in range(args.steps):
                step(forward)
            seconds[label] += time.perf_counter() - began
    per_step = {label: s / (args.rounds * args.steps) for label, s in seconds.items()}
    plain = per_step["plain forward"]
    lines = [
        f"Encoder: {name}; {recording.n_neurons} neurons; one trial of {trial.n_frames} frames of "
        f"{recording.frame_shape}; update region {int(changing.sum())} px (the core's surround computes "
        f"{surround.cost_fraction:.2f} of its convolutions); torch threads {torch.get_num_threads()}; "
        f"{args.rounds} rounds x {args.steps} steps per way.",
        "",
        "| forward pass | s / step | speed-up | prepare (s, once) | max rate error | max gradient error (in mask) |",
        "|---|---|---|---|---|---|",
    ]
    for label, (_, prepare_seconds) in ways.items():
        rate_error, grad_error = errors[label]
        lines.append(
            f"| {label} | {per_step[label]:.3f} | {plain / per_step[label]:.2f}x | {prepare_seconds:.2f} | "
            f"{rate_error:.1e} | {grad_error:.1e} |"
        )
    text = "\n".join(lines)
    publish(text, "Prepared forward pass", args.markdown)


if __name__ == "__main__":
    main()
