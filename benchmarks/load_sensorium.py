"""How long until trial 0 of a Sensorium-layout dataset is in memory?

Target (foundation issue): a dataset of 2,000 neurons and 60 trials loads, to the point where
trial 0's arrays are available, in under 2 s. The dataset is made by the digital twin's own
script (../shared/twin/make_twin_dataset.py) unless --dataset names one.

    python benchmarks/load_sensorium.py                       # makes ~/.cache/movie-recon/bench-2000x60
    python benchmarks/load_sensorium.py --dataset DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def make_dataset(out: Path, neurons: int, trials: int) -> None:
    media = SHARED / "data"
    subprocess.run(
        [sys.executable, str(SHARED / "twin" / "make_twin_dataset.py"), "--checkpoint", str(SHARED / "twin" / "sensorium_sota_model.pth"),
         "--train-media", str(media / "movies" / "bikes.mp4"), str(media / "images" / "kodim03.png"),
         "--test-media", str(media / "movies" / "cockatoo.mp4"), "--out", str(out),
         "--trials", str(trials - 6), "--test-trials", "6", "--neurons", str(neurons), "--seed", "0"],
        check=True, stdout=subprocess.DEVNULL,
    )


COLD = """
import time
t0 = time.perf_counter()
from movie_reconstruction.io.sensorium import read_sensorium  # numpy included
t1 = time.perf_counter()
recording = read_sensorium({path!r})
trial = recording.trial(0)
total = float(trial.video.sum() + trial.responses.sum() + trial.behavior.sum())  # touch every byte
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, recording.n_neurons, len(recording))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, help="an existing Sensorium mouse folder")
    parser.add_argument("--neurons", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    dataset = args.dataset or Path.home() / ".cache" / "movie-recon" / f"bench-{args.neurons}x{args.trials}"
    if not dataset.exists():
        print(f"making {dataset} with the twin script ...", flush=True)
        make_dataset(dataset, args.neurons, args.trials)
    rows = []
    for _ in range(args.repeats):
        # a fresh interpreter each time: the import is part of what a user waits for
        out = subprocess.run([sys.executable, "-c", COLD.format(path=str(dataset))], capture_output=True, text=True, check=True)
        import_s, load_s, n_neurons, n_trials = out.stdout.split()
        rows.append((float(import_s), float(load_s)))
    best_import, best_load = min(r[0] for r in rows), min(r[1] for r in rows)
    print(f"dataset: {dataset} ({n_neurons} neurons, {n_trials} trials)")
    print("| step | best of %d (s) |" % args.repeats)
    print("|---|---|")
    print(f"| import (numpy + movie_reconstruction.io.sensorium) | {best_import:.3f} |")
    print(f"| read_sensorium + trial 0 in memory | {best_load:.3f} |")
    print(f"| total | {best_import + best_load:.3f} (target < 2 s) |")
    return 0 if best_import + best_load < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
