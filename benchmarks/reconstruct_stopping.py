"""Masked correlation against optimisation step, and where early-stopping settings would stop.

Runs one ensemble member of a results folder (``movie-recon train``'s output, with the mask
``movie-recon reconstruct`` saved) on validation trials, never the test trials, without
early stopping, and scores the blurred movie every ``--every`` steps. Then it replays the
recorded loss curves through the plateau stopper for several (patience, min_improvement,
min_iterations) settings and reports where each stops and the correlation there.

    PYTHONPATH=src python benchmarks/reconstruct_stopping.py --results runs/twin --trials 4 \\
        --iterations 120 --threads 2 --markdown stopping.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

CANDIDATES = [(20, 0.01, 40), (10, 0.01, 30), (10, 0.005, 30), (15, 0.02, 30), (10, 0.02, 30), (20, 0.03, 30)]


def stopping_step(losses, patience, min_improvement, min_iterations) -> int:
    from movie_reconstruction.reconstruct.optimiser import _PlateauStopper

    stopper = _PlateauStopper(patience, min_improvement, min_iterations)
    for step, loss in enumerate(losses, start=1):
        if stopper.should_stop(loss):
            return step
    return len(losses)


def correlation_at(curve, step) -> float:
    steps, values = np.array(curve, dtype=float).T
    return float(np.interp(step, steps, values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="a results folder with models/ and mask.safetensors")
    parser.add_argument("--member", default="model_0")
    parser.add_argument("--trials", type=int, default=4, help="how many validation trials")
    parser.add_argument("--iterations", type=int, default=120)
    parser.add_argument("--every", type=int, default=2, help="score the movie every this many steps")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the curves here")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from movie_reconstruction.model import load_encoder
    from movie_reconstruction.progress import run
    from movie_reconstruction.reconstruct import ReconstructionConfig, reconstruct
    from movie_reconstruction.reconstruct.ensemble import blur_movies
    from movie_reconstruction.reconstruct.mask import load_mask
    from movie_reconstruction.reconstruct.metrics import masked_correlation
    from movie_reconstruction.results import ResultsFolder
    from movie_reconstruction.results_recording import open_recording, recording_path_of

    if args.threads:
        torch.set_num_threads(args.threads)
    results = ResultsFolder.open(args.results)
    recording_path = recording_path_of(results)
    recording = open_recording(recording_path)
    validation = [int(i) for i in recording.indices("validation")[: args.trials]]
    if not validation:
        sys.exit(f"{recording_path} has no validation trials")
    model = load_encoder(results.models_dir / args.member, recording)
    mask = load_mask(results.mask_path)
    defaults = ReconstructionConfig()
    config = dataclasses.replace(
        defaults, iterations=args.iterations, early_stopping=False, preview_every=args.every, batch_size=1
    )

    curves, losses = [], []
    for trial_id in validation:
        trial = recording.trial(trial_id)
        curve = []

        def score(event, trial=trial, curve=curve):
            if event.preview is not None:
                movie = blur_movies(event.preview, defaults.blur_sigma)[0]
                curve.append((event.step, masked_correlation(movie, trial.video, mask.alpha)))

        result = run(reconstruct(model, [trial], config, mask=mask, device=args.device), score)
        curves.append(curve)
        losses.append(result.member_loss_history[0].tolist())
        best = max(curve, key=lambda c: c[1])
        print(f"trial {trial_id}: best r {best[1]:.3f} at step {best[0]}, r {curve[-1][1]:.3f} at step {curve[-1][0]}",
              flush=True)

    if args.json:
        args.json.write_text(json.dumps({"trials": validation, "curves": curves, "losses": losses}))

    current = (defaults.patience, defaults.min_improvement, defaults.min_iterations)
    candidates = CANDIDATES if current in CANDIDATES else [current, *CANDIDATES]
    peaks = [max(v for _, v in c) for c in curves]
    lines = [
        "# Early stopping on validation trials",
        "",
        f"Command: `benchmarks/reconstruct_stopping.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"Member `{args.member}` of `{args.results}`, validation trials {validation}, "
        f"{args.iterations} steps without early stopping, blurred movie scored every {args.every} steps.",
        "",
        "| trial | " + " | ".join(str(t) for t in validation) + " | mean |",
        "|---|" + "---|" * (len(validation) + 1),
        "| best r (step) | "
        + " | ".join(f"{max(c, key=lambda x: x[1])[1]:.3f} ({max(c, key=lambda x: x[1])[0]})" for c in curves)
        + f" | {np.mean(peaks):.3f} |",
        f"| r at step {args.iterations} | " + " | ".join(f"{c[-1][1]:.3f}" for c in curves)
        + f" | {np.mean([c[-1][1] for c in curves]):.3f} |",
        "",
        "| patience, min_improvement, min_iterations | stops at | r there | mean r | mean steps |",
        "|---|---|---|---|---|",
    ]
    for setting in candidates:
        steps = [stopping_step(loss, *setting) for loss in losses]
        values = [correlation_at(c, s) for c, s in zip(curves, steps)]
        mark = " (default)" if setting == current else ""
        lines.append(
            f"| {setting[0]}, {setting[1]}, {setting[2]}{mark} | {', '.join(map(str, steps))} | "
            f"{', '.join(f'{v:.3f}' for v in values)} | {np.mean(values):.3f} | {np.mean(steps):.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
