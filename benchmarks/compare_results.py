"""Results folders side by side: masked r, SSIM and the checkerboard measures, one row per folder.

Reads each folder's ``metrics.json`` (``movie-recon reconstruct`` / ``movie-recon evaluate``
write it) and prints a markdown table over the trials the folders have in common, so two
settings run on the same ensemble (for example ``--jitter 0`` and ``--jitter 1`` in two copies
of one trained folder) compare on equal terms::

    PYTHONPATH=src python benchmarks/compare_results.py runs/twin runs/twin-j1

Columns: mean and median masked r, mean SSIM, the median artifact index (high-frequency share
over the stimulus's), and the median and largest ratio of the Nyquist share to the stimulus's
(docs/reconstruction.md, "Metrics").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def trial_rows(folder: Path) -> dict[int, dict]:
    metrics = json.loads((folder / "metrics.json").read_text())
    return {int(row["trial_id"]): row for row in metrics["trials"]}


def summarise(rows: list[dict]) -> dict[str, float]:
    def values(key):
        return np.array([float(r[key]) for r in rows])

    nyquist_ratio = values("nyquist_share") / values("stimulus_nyquist_share")
    return {
        "mean r": float(values("correlation").mean()),
        "median r": float(np.median(values("correlation"))),
        "mean SSIM": float(values("ssim").mean()),
        "median artifact index": float(np.median(values("artifact_index"))),
        "median Nyquist / stimulus": float(np.median(nyquist_ratio)),
        "max Nyquist / stimulus": float(nyquist_ratio.max()),
    }


def table(folders: list[Path]) -> str:
    per_folder = [trial_rows(f) for f in folders]
    common = sorted(set.intersection(*(set(rows) for rows in per_folder)))
    if not common:
        raise SystemExit("the folders have no reconstructed trial in common")
    summaries = [summarise([rows[t] for t in common]) for rows in per_folder]
    columns = list(summaries[0])
    lines = [f"Trials {common[0]} to {common[-1]} ({len(common)} in common)", "",
             "| results | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for folder, summary in zip(folders, summaries):
        lines.append(f"| {folder} | " + " | ".join(f"{summary[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="results folders with metrics.json")
    args = parser.parse_args(argv)
    print(table(args.folders))


if __name__ == "__main__":
    main()
