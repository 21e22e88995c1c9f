"""Pretrain the bundled core: fit the small preset to half A of the digital twin's neurons and
write its core (weights + architecture + provenance) into the package.

Half A is fixed by ``encoder_quality.neuron_halves`` (split seed 0), so the benchmarks can fit
the other half (B) as "a new mouse" and compare a pretrained core with training from scratch.
The dataset is the twin-40min folder described in docs/encoder.md.

Example (the bundled core has the fast preset's shape)::

    python benchmarks/encoder_pretrain_core.py --dataset ~/.cache/movie-recon/twin-40min \\
        --max-minutes 15 --threads 2 --preset fast
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encoder_quality import neuron_halves, parse_overrides  # noqa: E402

MAX_BYTES = 5 * 1024 * 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--dataset", type=Path, default=Path("~/.cache/movie-recon/twin-40min").expanduser())
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--preset", default="fast", choices=["fast", "small", "large"])
    ap.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                    help="change architecture settings of the preset, e.g. channels=16")
    ap.add_argument("--max-minutes", type=float, default=15.0)
    ap.add_argument("--max-epochs", type=int, default=None)
    ap.add_argument("--budget-clock", default="wall", choices=["wall", "process"],
                    help="count --max-minutes in wall time or in this process's CPU time (shared machines)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="default: the package's bundled core file")
    a = ap.parse_args(argv)

    import torch

    from movie_reconstruction.io.sensorium import read_sensorium
    from movie_reconstruction.model import EncoderConfig, TrainConfig, train_encoder
    from movie_reconstruction.model.pretrained import bundled_core_path, save_core
    from movie_reconstruction.progress import run

    if a.threads:
        torch.set_num_threads(a.threads)
    full = read_sensorium(a.dataset)
    half_a, _ = neuron_halves(full.n_neurons, a.split_seed)
    recording = full.with_neurons(half_a)
    print(recording, flush=True)
    training = TrainConfig.preset(a.preset).replace(max_minutes=a.max_minutes, seed=a.seed, device=a.device,
                                                                budget_clock=a.budget_clock)
    if a.max_epochs:
        training = training.replace(max_epochs=a.max_epochs)
    started = time.perf_counter()
    architecture = EncoderConfig.preset(a.preset).replace(**parse_overrides(a.overrides))
    result = run(train_encoder(recording, architecture, training),
                 lambda e: print(f"{e.message} ({time.perf_counter() - started:.0f} s)", flush=True)
                 if "val_corr" in e.metrics else None)
    twin = json.loads((a.dataset / "twin.json").read_text()) if (a.dataset / "twin.json").exists() else {}
    provenance = {
        "made_by": "benchmarks/encoder_pretrain_core.py",
        "teacher": "digital twin: sinzlab/sensorium Sensorium 2022 model (MIT licence) of 7,776 V1 neurons of "
                   "mouse 26872-17-20, driven by ../shared/twin/make_twin_dataset.py",
        "dataset": {k: twin.get(k) for k in ("trials", "frames", "noise", "seed", "train_media", "test_media")},
        "neurons": f"half A: {half_a.size} of {full.n_neurons} twin neurons (permutation seed {a.split_seed})",
        "preset": a.preset,
        "architecture_changes": parse_overrides(a.overrides),
        "best_val_corr": round(result.best_val_corr, 4),
        "epochs": len(result.history) - 1,
        "stopped_because": result.stopped_because,
        "train_minutes": round(result.seconds / 60, 2),
        "cpu_minutes": round(result.cpu_seconds / 60, 2),
        "device": result.device,
        "data_hash": result.data_hash,
    }
    out = a.out or bundled_core_path()
    save_core(result.encoder, out, provenance)
    size = out.stat().st_size
    print(json.dumps(provenance, indent=1))
    print(f"wrote {out} ({size / 1024:.1f} KiB)")
    if size > MAX_BYTES:
        raise SystemExit(f"core is {size} bytes, over the 5 MB limit for bundled weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
