"""A picture of a results folder's reconstructions: stimulus over reconstruction, several trials.

Picks the best, the median and the worst reconstructed trial by masked correlation (or the
trials given), shows evenly spaced frames after the dropped ones with the evaluation mask
outlined, and, given ``--stopping`` (the JSON of ``reconstruct_stopping.py --json``), the
masked correlation of one member against optimisation step on validation trials.

    PYTHONPATH=src python benchmarks/reconstruct_figure.py --results runs/twin \\
        --stopping stopping.json --out docs/images/twin_reconstruction.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def pick_trials(trials, wanted):
    if wanted:
        by_id = {t.trial_id: t for t in trials}
        return [by_id[int(i)] for i in wanted.split(",")]
    ranked = sorted(trials, key=lambda t: t.correlation, reverse=True)
    picks = [ranked[0], ranked[len(ranked) // 2], ranked[-1]]
    return list({id(t): t for t in picks}.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--trial-ids", default=None, help="comma-separated; default: best, median and worst")
    parser.add_argument("--frames", type=int, default=8, help="frames shown per trial")
    parser.add_argument("--stopping", type=Path, default=None, help="curves written by reconstruct_stopping.py --json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from movie_reconstruction._atomic import atomic_path
    from movie_reconstruction.reconstruct.metrics import DROP_FRAMES
    from movie_reconstruction.results import load_results

    results = load_results(args.results)
    if not results.trials:
        raise SystemExit(f"{args.results} holds no reconstructed trials")
    trials = pick_trials(results.trials, args.trial_ids)
    mean_r = np.mean([t.correlation for t in results.trials])
    rows = 2 * len(trials) + (1 if args.stopping else 0)
    heights = [1] * (2 * len(trials)) + ([2.2] if args.stopping else [])
    fig = plt.figure(figsize=(1.7 * args.frames, 1.05 * sum(heights) + 0.6))
    grid = fig.add_gridspec(rows, args.frames, height_ratios=heights, hspace=0.35, wspace=0.05, top=0.93)
    for number, trial in enumerate(trials):
        picks = np.linspace(DROP_FRAMES, trial.n_frames - 1, args.frames).round().astype(int)
        for col, frame in enumerate(picks):
            for offset, (movie, name) in enumerate(((trial.stimulus, "stimulus"), (trial.reconstruction, "reconstruction"))):
                ax = fig.add_subplot(grid[2 * number + offset, col])
                ax.imshow(movie[frame], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                if results.mask is not None and (results.mask >= 1).any():
                    ax.contour(results.mask >= 1, levels=[0.5], colors="#ffcc00", linewidths=0.5)
                ax.set_xticks([])
                ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(f"{name}\ntrial {trial.trial_id}" if offset == 0 else f"{name}\nr = {trial.correlation:.2f}",
                                  fontsize=7)
                if offset == 0 and number == 0:
                    ax.set_title(f"frame {frame}", fontsize=7)
    if args.stopping:
        data = json.loads(args.stopping.read_text())
        ax = fig.add_subplot(grid[-1, : args.frames])
        for trial_id, curve in zip(data["trials"], data["curves"]):
            steps, values = np.array(curve).T
            ax.plot(steps, values, label=f"validation trial {trial_id}")
        stopped_at = [np.mean(t.info["iterations"]) for t in results.trials if t.info.get("iterations")]
        if stopped_at:
            ax.axvspan(min(stopped_at), max(stopped_at), color="0.85", label="where the test runs stopped")
        ax.set_xlabel("optimisation step (one member, no early stopping)", fontsize=8)
        ax.set_ylabel("masked r", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, ncol=3, loc="lower right")
    members = results.trials[0].members
    fig.suptitle(
        f"{len(results.trials)} test trials, {members}-member ensemble: mean masked r = {mean_r:.3f} "
        f"(yellow: evaluation mask; first {DROP_FRAMES} frames dropped)",
        fontsize=9,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
