"""Reconstruction through the simulated mouse's true model, next to the demo's learned ensemble.

Takes a results folder written by ``movie-recon demo`` (it holds the simulated session, the
aligned recording, the transparency mask and the controls table). For each test trial it
reconstructs the movie through :class:`~movie_reconstruction.simulate.oracle.PopulationEncoder`
(the population that made the data) from the true spike counts, with the default optimiser
settings and the demo's mask, and prints the masked correlation beside the demo's own::

    movie-recon demo -o demo-results
    python benchmarks/simulate_oracle.py demo-results --iterations 100 200
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np


def oracle_trials(results: Path):
    from movie_reconstruction.io.sensorium import read_sensorium
    from movie_reconstruction.simulate import load_ground_truth

    session = results / "session"
    truth = load_ground_truth(session)
    with open(session / "timing" / "trials.csv", newline="") as handle:
        spans = {int(row["trial_id"]): (int(row["start_frame"]), int(row["n_frames"])) for row in csv.DictReader(handle)}
    trials = []
    for trial in read_sensorium(results / "recording"):
        if trial.tier == "test":
            start, count = spans[trial.trial_id]
            trials.append(replace(trial, responses=truth.spikes_on_stimulus_frames[:, start : start + count].astype(np.float32)))
    return trials


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a results folder of `movie-recon demo`")
    parser.add_argument("--iterations", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--start-noise", type=float, default=10.0, help="grey levels; the true rectifier is flat at grey")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from movie_reconstruction.progress import run
    from movie_reconstruction.reconstruct.mask import load_mask
    from movie_reconstruction.reconstruct.metrics import masked_correlation
    from movie_reconstruction.reconstruct.optimiser import ReconstructionConfig, reconstruct
    from movie_reconstruction.simulate.oracle import PopulationEncoder

    torch.set_num_threads(args.threads)
    oracle = PopulationEncoder.from_session(args.results / "session")
    mask = load_mask(args.results / "mask.safetensors")
    trials = oracle_trials(args.results)
    learned = json.loads((args.results / "controls.json").read_text())["real_per_trial"]
    print("| encoder | steps | masked r per test trial | mean |")
    print("|---|---|---|---|")
    print(f"| demo's learned ensemble | (demo) | {', '.join(f'{r:.3f}' for r in learned)} | {np.mean(learned):.3f} |")
    for steps in args.iterations:
        config = ReconstructionConfig(iterations=steps, start_noise=args.start_noise, early_stopping=False)
        movies = run(reconstruct(oracle, trials, config, mask=mask)).movies
        scores = [masked_correlation(movie, trial.video, mask.alpha) for movie, trial in zip(movies, trials)]
        print(f"| true model (oracle), true spikes | {steps} | {', '.join(f'{r:.3f}' for r in scores)} | {np.mean(scores):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
