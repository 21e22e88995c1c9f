#!/usr/bin/env python3
"""How well does the pipeline recover a simulated mouse? (and how long does it take)

Simulates a session (``--preset default|quick|tiny``), runs suite2p on its raw TIFFs (through
``movie_reconstruction.extract.extract_traces``), matches suite2p's ROIs to the true soma
footprints, bins the deconvolved traces onto the stimulus frames (``movie_reconstruction.align
.traces_on_frames``) and correlates them with the true firing rates.

Reported:
- detection: of the simulated neurons whose true peak dF/F exceeds 0.5, the fraction that a
  suite2p ROI matches (footprint IoU >= 0.3, one-to-one assignment), among all ROIs and
  among the ROIs suite2p's classifier calls cells;
- rate recovery: per matched neuron, Pearson r over all trial frames between the true rate
  (as is, per stimulus frame) and the binned deconvolved trace, raw and smoothed with a
  Gaussian of ``--smooth-frames`` s.d.; the same for the true spike counts is the reference
  (what a perfect spike detector would reach with that estimator);
- wall time of simulation, suite2p and alignment.

Example:
  python benchmarks/simulate_recovery.py --preset quick --out /tmp/sim-bench --markdown docs/simulation_benchmark.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def iou_matrix(truth_labels_fp, rois, shape) -> np.ndarray:
    """IoU between each true footprint (weight >= 0.3) and each ROI's pixels."""
    truth = (truth_labels_fp.toarray() >= 0.3).astype(np.float32)  # (N, P)
    roi = np.zeros((len(rois), shape[0] * shape[1]), np.float32)
    for k, mask in enumerate(rois):
        roi[k, np.asarray(mask.ypix) * shape[1] + np.asarray(mask.xpix)] = 1.0
    inter = truth @ roi.T
    union = truth.sum(1)[:, None] + roi.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1.0)


def match(iou: np.ndarray, threshold: float = 0.3) -> dict[int, int]:
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return {}
    rows, cols = linear_sum_assignment(-iou)
    return {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] >= threshold}


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-12)


def trial_frames(session_dir: Path) -> np.ndarray:
    table = np.loadtxt(session_dir / "timing/trials.csv", delimiter=",", skiprows=1, usecols=(1, 2), ndmin=2).astype(int)
    return np.concatenate([np.arange(s, s + n) for s, n in table])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--preset", default="quick", choices=["default", "quick", "tiny"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/movie-recon-sim-bench"), help="work folder (replaced)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for numpy/torch (the CI machine has 2)")
    ap.add_argument("--peak-dff", type=float, default=0.5, help="neurons whose true peak dF/F exceeds this are counted")
    ap.add_argument("--smooth-frames", type=float, default=3.0, help="Gaussian s.d. (stimulus frames) for the smoothed estimate")
    ap.add_argument("--markdown", type=Path, help="also write the result table to this markdown file")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from movie_reconstruction.align import traces_on_frames
    from movie_reconstruction.extract import extract_traces
    from movie_reconstruction.progress import run
    from movie_reconstruction.simulate import SimulationConfig, simulate_session

    if a.out.exists():
        shutil.rmtree(a.out)
    config = SimulationConfig.preset(a.preset)
    t0, c0 = time.perf_counter(), time.process_time()
    session = simulate_session(a.out / "session", config, seed=a.seed)
    t_sim, c_sim = time.perf_counter() - t0, time.process_time() - c0
    hints = json.loads((session.path / "simulation.json").read_text())["suite2p_hints"]

    t0, c0 = time.perf_counter(), time.process_time()
    planes = run(
        extract_traces(
            session.raw_files, a.out / "extraction", fs=hints["fs"], tau=hints["tau"], diameter=hints["diameter"],
            cell_threshold=0.0, device="cpu", nonrigid=hints.get("nonrigid"),
        )
    )
    t_s2p, c_s2p = time.perf_counter() - t0, time.process_time() - c0
    traces = planes[0]

    truth = session.load_ground_truth()
    imaging_times = np.load(session.path / "timing/imaging_frame_times.npy")
    stimulus_times = np.load(session.path / "timing/stimulus_frame_times.npy")
    t0 = time.perf_counter()
    recovered = traces_on_frames(traces.spks, imaging_times, stimulus_times)
    t_align = time.perf_counter() - t0

    frames = trial_frames(session.path)
    strong = np.flatnonzero(truth.dff.max(axis=1) > a.peak_dff)
    iou = iou_matrix(truth.footprints, traces.roi_masks, traces.frame_shape)
    pairs_all = match(iou[strong])
    is_cell = traces.cell_probability >= 0.5
    pairs_cell = match(iou[strong][:, is_cell])
    found_all = len(pairs_all) / max(len(strong), 1)
    found_cell = len(pairs_cell) / max(len(strong), 1)

    truth_rows = strong[list(pairs_all)]
    roi_rows = np.asarray(list(pairs_all.values()), int)
    recovered_rows = recovered[roi_rows].astype(np.float64)
    corrected_rows = traces_on_frames(traces.corrected(), imaging_times, stimulus_times)[roi_rows].astype(np.float64)
    true_rates = truth.rates[truth_rows].astype(np.float64)
    true_counts = truth.spikes_on_stimulus_frames[truth_rows].astype(np.float64)

    def smooth(x, sigma):
        from scipy.ndimage import gaussian_filter1d

        return gaussian_filter1d(x, sigma, axis=1) if sigma else x

    # The true rate is compared as is, on every stimulus frame. The recovered rate is the
    # binned deconvolved trace, raw and smoothed in time (a spike train estimates a rate
    # better once smoothed); the same for the true spike counts gives the reference.
    measures = {}
    for label, sigma in (("raw", 0.0), (f"smoothed {1000 * a.smooth_frames / config.stimulus.frame_rate:.0f} ms", a.smooth_frames)):
        measures[label] = (
            pearson_rows(smooth(recovered_rows, sigma)[:, frames], true_rates[:, frames]),
            pearson_rows(smooth(corrected_rows, sigma)[:, frames], true_rates[:, frames]),
            pearson_rows(smooth(true_counts, sigma)[:, frames], true_rates[:, frames]),
        )

    rows = [
        ("preset / seed", f"{a.preset} / {a.seed}"),
        ("neurons / imaging frames / FOV", f"{session.n_neurons} / {session.n_imaging_frames} / {config.imaging.fov_shape[0]}x{config.imaging.fov_shape[1]}"),
        ("session length (s)", f"{session.duration_s:.0f}"),
        ("neurons with true peak dF/F > %.2g" % a.peak_dff, f"{len(strong)}"),
        ("suite2p ROIs (all / classifier cells)", f"{traces.n_cells} / {int(is_cell.sum())}"),
        ("found among all ROIs (IoU >= 0.3)", f"{found_all:.1%}"),
        ("found among classifier cells", f"{found_cell:.1%}"),
        *[
            row
            for label, (r_spks, r_f, r_truth) in measures.items()
            for row in (
                (f"r(binned deconvolved, {label}; true rate): median", f"{np.median(r_spks):.3f}"),
                (f"r(binned deconvolved, {label}; true rate): fraction >= 0.8", f"{np.mean(r_spks >= 0.8):.1%}"),
                (f"r(binned F - 0.7 Fneu, {label}; true rate): median", f"{np.median(r_f):.3f}"),
                (f"reference r(true spike counts, {label}; true rate): median", f"{np.median(r_truth):.3f}"),
            )
        ],
        ("simulation: wall / CPU (s)", f"{t_sim:.1f} / {c_sim:.1f}"),
        ("suite2p: wall / CPU (s)", f"{t_s2p:.1f} / {c_s2p:.1f}"),
        ("alignment (s)", f"{t_align:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"CPU threads: {a.threads}, cores: {os.cpu_count()}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if a.markdown:
        lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
        a.markdown.write_text("\n".join(lines) + "\n")
    if not a.keep:
        shutil.rmtree(a.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
