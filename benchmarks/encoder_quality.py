"""Encoder quality on the digital twin: test correlation against the noise ceiling, by minutes of data.

The twin dataset is a Sensorium-layout folder written by ``../shared/twin/make_twin_dataset.py``
with ``--save-rates`` (see docs/encoder.md for the exact command). Neurons are split once, with
a fixed seed, into two halves: half A is for pretraining a core (encoder_pretrain_core.py),
half B is "the new mouse"; the evaluated population is a fixed random subset of half B
(``--neurons``, default 2,000).

For each amount of data (``--minutes``, counted as train + validation movie time, 10 % of it
validation), an encoder is trained from scratch (or from ``--init-core``) and evaluated on the
dataset's test trials (held-out media). Reported per run: test single-trial correlation, the
ceiling (noise-free rates vs the same responses, computed the same way), their ratio, the
correlation with the noise-free rates, epochs, wall time and training throughput.

Example (the acceptance run)::

    python benchmarks/encoder_quality.py --dataset ~/.cache/movie-recon/twin-40min \\
        --minutes 20 --max-minutes 20 --threads 2 --json results.json --markdown table.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def neuron_halves(n_neurons: int, seed: int = 0):
    """The fixed split used by all encoder benchmarks: (half A for pretraining, half B to fit)."""
    perm = np.random.default_rng(seed).permutation(n_neurons)
    return np.sort(perm[: n_neurons // 2]), perm[n_neurons // 2 :]


def evaluation_neurons(n_neurons: int, count: int, seed: int = 0) -> np.ndarray:
    """The first ``count`` neurons of half B's random order, sorted: a fixed random subset of half B."""
    _, half_b = neuron_halves(n_neurons, seed)
    if count > half_b.size:
        raise SystemExit(f"--neurons {count} is more than half B's {half_b.size} neurons")
    return np.sort(half_b[:count])


def select_minutes(recording, minutes: float):
    """Train and validation trials covering ``minutes`` of movie (10 % validation); None if too few."""
    train = recording.indices("train")
    validation = recording.indices("validation")
    seconds_per_trial = recording.videos[0].shape[0] / recording.frame_rate
    total = int(round(minutes * 60 / seconds_per_trial))
    n_val = max(1, int(round(0.1 * total)))
    n_train = total - n_val
    if n_train > train.size or n_val > validation.size:
        return None
    keep = np.concatenate([train[:n_train], validation[:n_val], recording.indices("test")])
    return recording.select(np.sort(keep))


def parse_overrides(pairs) -> dict:
    """``["channels=24", "residual=true"]`` -> ``{"channels": 24, "residual": True}``."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--dataset", type=Path, default=Path("~/.cache/movie-recon/twin-40min").expanduser())
    ap.add_argument("--neurons", type=int, default=2000, help="size of the evaluated subset of half B")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--preset", default="small", choices=["fast", "small", "large"])
    ap.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                    help="change architecture settings of the preset, e.g. channels=24 residual=true")
    ap.add_argument("--train-set", dest="train_overrides", nargs="+", default=[], metavar="KEY=VALUE",
                    help="change training settings of the preset, e.g. lr=0.01 batch_size=16")
    ap.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 40])
    ap.add_argument("--max-minutes", type=float, default=20.0, help="training wall-clock budget per run")
    ap.add_argument("--max-epochs", type=int, default=None)
    ap.add_argument("--init-core", default=None, help='"bundled" or a core/checkpoint path (default: from scratch)')
    ap.add_argument("--core-lr-scale", type=float, default=0.1, help="fine-tuning rate of a pretrained core (0 freezes)")
    ap.add_argument("--budget-clock", default="wall", choices=["wall", "process"],
                    help="count --max-minutes in wall time or in this process's CPU time (shared machines)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--save", type=Path, default=None, help="save each trained encoder under this folder")
    ap.add_argument("--json", type=Path, default=None, help="append result rows to this JSON file")
    ap.add_argument("--markdown", type=Path, default=None, help="write the table of all rows in --json here")
    ap.add_argument("--label", default=None, help="name of this arm in the table (default: scratch/pretrained)")
    a = ap.parse_args(argv)

    import torch

    from movie_reconstruction.io.sensorium import read_sensorium
    from movie_reconstruction.model import EncoderConfig, TrainConfig, evaluate_encoder, save_encoder, train_encoder
    from movie_reconstruction.progress import run

    if a.threads:
        torch.set_num_threads(a.threads)
    full = read_sensorium(a.dataset)
    index = evaluation_neurons(full.n_neurons, a.neurons, a.split_seed)
    recording = full.with_neurons(index)
    label = a.label or ("scratch" if a.init_core is None else "pretrained core")
    architecture = EncoderConfig.preset(a.preset).replace(**parse_overrides(a.overrides))
    print(f"{recording}; evaluated neurons: {a.neurons} of half B (split seed {a.split_seed})", flush=True)
    rows = []
    for minutes in a.minutes:
        subset = select_minutes(recording, minutes)
        if subset is None:
            print(f"{minutes:g} min: the dataset has too few trials, skipped", flush=True)
            rows.append({"arm": label, "minutes": minutes, "skipped": "not enough trials in the dataset"})
            continue
        training = TrainConfig.preset(a.preset).replace(max_minutes=a.max_minutes, seed=a.seed, device=a.device,
                                                                budget_clock=a.budget_clock,
                                                         core_lr_scale=a.core_lr_scale)
        if a.max_epochs:
            training = training.replace(max_epochs=a.max_epochs)
        training = training.replace(**parse_overrides(a.train_overrides))
        started = time.perf_counter()

        def show(event):
            if "val_corr" in event.metrics:
                print(f"  {minutes:g} min, {event.message} ({time.perf_counter() - started:.0f} s)", flush=True)

        result = run(train_encoder(subset, architecture, training, init_core=a.init_core), show)
        metrics = evaluate_encoder(result.encoder, subset, "test")
        row = {
            "arm": label,
            "preset": a.preset,
            "minutes": minutes,
            "train_trials": int((subset.tiers == "train").sum()),
            "validation_trials": int((subset.tiers == "validation").sum()),
            "test_trials": metrics["trials"],
            "neurons": subset.n_neurons,
            "test_corr": metrics["single_trial"],
            "ceiling": metrics["ceiling"],
            "fraction_of_ceiling": metrics["fraction_of_ceiling"],
            "corr_to_rates": metrics["to_rates"],
            "best_val_corr": result.best_val_corr,
            "epochs": len(result.history) - 1,
            "best_epoch": result.best_epoch,
            "stopped_because": result.stopped_because,
            "train_minutes": result.seconds / 60,
            "cpu_minutes": result.cpu_seconds / 60,
            "budget": f"{a.max_minutes:g} min {a.budget_clock}",
            "frames_per_second": result.frames_per_second,
            "threads": torch.get_num_threads(),
            "device": result.device,
            "init_core": a.init_core,
            "architecture": result.encoder.architecture.to_dict(),
            "training": training.to_dict(),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.save:
            save_encoder(result.encoder, a.save / f"{label.replace(' ', '_')}_{minutes:g}min")
    if a.json:
        existing = json.loads(a.json.read_text()) if a.json.exists() else []
        a.json.write_text(json.dumps(existing + rows, indent=1))
        rows = existing + rows
    table = markdown_table(rows)
    print(table)
    if a.markdown:
        a.markdown.write_text(table + "\n")
    return 0


def markdown_table(rows) -> str:
    lines = [
        "| arm | min of data | train/val/test trials | test corr | ceiling | fraction | corr to rates | epochs | train min | frames/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['arm']} | {r['minutes']:g} | {r['skipped']} | | | | | | | |")
            continue
        lines.append(
            f"| {r['arm']} | {r['minutes']:g} | {r['train_trials']}/{r['validation_trials']}/{r['test_trials']} "
            f"| {r['test_corr']:.3f} | {r['ceiling']:.3f} | {r['fraction_of_ceiling']:.2f} | {r['corr_to_rates']:.3f} "
            f"| {r['epochs']} | {r['train_minutes']:.1f} | {r['frames_per_second']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
