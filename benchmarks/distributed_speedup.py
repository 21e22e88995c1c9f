"""Wall-time speed-up of a Dask LocalCluster (2 single-threaded workers) over a serial run
(this process, torch's default threads), reconstructing the same trials in one run.

Both runs go through ``movie_reconstruction.pipeline.reconstruct_stage`` on the same
recording and checkpoints, into separate results folders, and the results are checked to
agree. The encoders are the small preset, initialised but not trained: reconstruction costs
the same for any weights, and the benchmark should not spend its time training.

    python benchmarks/distributed_speedup.py                    # 8 trials of 300 frames
    python benchmarks/distributed_speedup.py --markdown docs/distributed_speedup.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def make_results(folder: Path, trials: int, frames: int, neurons: int, models: int, seed: int = 0):
    import torch
    from scipy.ndimage import gaussian_filter

    from movie_reconstruction.io.sensorium import write_sensorium
    from movie_reconstruction.model import Encoder, save_encoder
    from movie_reconstruction.recording import from_arrays
    from movie_reconstruction.results import ResultsFolder

    rng = np.random.default_rng(seed)
    results = ResultsFolder.create(folder)
    n = trials + 3
    videos = [np.clip(128 + 400 * gaussian_filter(rng.normal(0, 1, (frames, 36, 64)), 2), 0, 255).astype(np.float32)
              for _ in range(n)]
    responses = [rng.poisson(1.0, (neurons, frames)).astype(np.float32) for _ in range(n)]
    behavior = [np.stack([np.full(frames, 5.0), rng.uniform(0, 1, frames), np.zeros(frames), np.zeros(frames)]) for _ in range(n)]
    tiers = ["train", "train", "validation"] + ["test"] * trials
    recording = from_arrays(videos, responses, behavior, frame_rate=30.0, tiers=tiers,
                            neuron_positions=rng.uniform(0, 100, (neurons, 2)), name="benchmark")
    write_sensorium(recording, results.recording_dir, overwrite=True)
    for k in range(models):
        torch.manual_seed(k)
        encoder = Encoder(neurons, (36, 64), recording.behavior_channels, neuron_positions=recording.neurons.positions,
                          neuron_ids=recording.neurons.ids)
        save_encoder(encoder.eval(), results.model_dir(k))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--neurons", type=int, default=200)
    parser.add_argument("--models", type=int, default=1, help="ensemble members (tasks = trials x members)")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()

    import shutil

    import torch

    from movie_reconstruction.distributed import dask_client
    from movie_reconstruction.pipeline import PipelineSettings, reconstruct_stage, with_changes
    from movie_reconstruction.progress import run

    settings = with_changes(PipelineSettings(), n_models=args.models, iterations=args.iterations, device="cpu", controls=False)
    with tempfile.TemporaryDirectory() as tmp:
        serial = make_results(Path(tmp) / "serial", args.trials, args.frames, args.neurons, args.models)
        cluster = Path(tmp) / "cluster"
        shutil.copytree(serial.path, cluster)
        from movie_reconstruction.results import ResultsFolder

        cluster = ResultsFolder.open(cluster)

        threads = torch.get_num_threads()
        started = time.perf_counter()
        serial_summary = run(reconstruct_stage(serial, settings))
        serial_s = time.perf_counter() - started

        with dask_client(n_workers=args.workers, threads_per_worker=1) as client:
            client.run(lambda: None)  # workers are up before the clock starts
            started = time.perf_counter()
            cluster_summary = run(reconstruct_stage(cluster, settings, client=client))
            cluster_s = time.perf_counter() - started

        worst = max(abs(serial_summary.correlations[t] - cluster_summary.correlations[t]) for t in serial_summary.trial_ids)
    tasks = args.trials * args.models
    rows = [
        ("serial (this process)", f"{threads} torch threads", serial_s),
        (f"LocalCluster", f"{args.workers} workers x 1 thread", cluster_s),
    ]
    lines = [
        f"Reconstruction of {args.trials} trials x {args.models} member(s) = {tasks} tasks, {args.frames} frames 36x64, "
        f"{args.neurons} neurons, small encoder, {args.iterations} iterations (early stopping on); "
        f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, measured in one run.",
        "",
        "| run | layout | wall time (s) |",
        "|---|---|---|",
        *[f"| {name} | {layout} | {seconds:.1f} |" for name, layout, seconds in rows],
        "",
        f"**Speed-up of the cluster over serial: {serial_s / cluster_s:.2f}x** "
        f"(largest difference in a trial's correlation between the two runs: {worst:.1e}).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text("# Distributed reconstruction speed-up\n\n`python benchmarks/distributed_speedup.py`\n\n" + text + "\n")


if __name__ == "__main__":
    main()
