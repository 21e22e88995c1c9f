"""Wall time of the README's demo, and whether its reconstruction beats its controls.

Targets (simulator and CLI issues): ``movie-recon demo --quick`` under 2 minutes and
``movie-recon demo`` under 10 minutes on a 2-core CPU, with a report whose reconstruction
beats its controls. Run on an otherwise idle machine:

    python benchmarks/demo_timing.py            # both
    python benchmarks/demo_timing.py --quick-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"quick": 120.0, "full": 600.0}


def run_demo(quick: bool, out: Path) -> dict:
    command = [sys.executable, "-m", "movie_reconstruction.cli", "demo", "-o", str(out), "-q"] + (["--quick"] if quick else [])
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    row = {"demo": "quick" if quick else "full", "seconds": seconds, "exit": proc.returncode}
    controls_path = out / "controls.json"
    if controls_path.exists():
        controls = json.loads(controls_path.read_text())
        row["real_r"] = controls["rows"][0]["mean_r"]
        row["beats_controls"] = bool(controls.get("beats_controls"))
    if proc.returncode:
        row["error"] = proc.stderr.strip().splitlines()[-1:] or ["?"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick-only", action="store_true")
    parser.add_argument("--out", type=Path, help="keep the results folders here (default: a temporary folder)")
    args = parser.parse_args(argv)
    base = args.out or Path(tempfile.mkdtemp(prefix="demo-timing-"))
    rows = [run_demo(True, base / "quick")]
    if not args.quick_only:
        rows.append(run_demo(False, base / "full"))
    print("| demo | wall (s) | target (s) | exit | masked r | beats controls |")
    print("|---|---|---|---|---|---|")
    ok = True
    for row in rows:
        target = TARGETS[row["demo"]]
        ok &= row["exit"] == 0 and row["seconds"] < target and row.get("beats_controls", False)
        print(f"| {row['demo']} | {row['seconds']:.0f} | {target:.0f} | {row['exit']} | {row.get('real_r', float('nan')):.3f} | {row.get('beats_controls', '-')} |")
    print(f"results in {base}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
