"""Encoder size and training speed: parameters, MACs per frame, and training throughput
(frames per second of forward + backward + AdamW step) for each preset, at 2,000 neurons.

Inputs are random tensors of the Sensorium frame size (36x64) with four behaviour channels, so
no dataset is needed. Throughput counts every frame of every clip (burn-in included), as the
training loop does. Both wall-clock frames/s and frames per CPU-second (all threads of this
process) are reported: on a shared machine the first depends on the neighbours.

Example::

    python benchmarks/encoder_speed.py --threads 2 --markdown speed.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def measure(preset: str, neurons: int, batch: int, frames: int, steps: int, device_name: str) -> dict:
    import torch

    from movie_reconstruction.device import pick_device
    from movie_reconstruction.model import Encoder, EncoderConfig

    device = pick_device(device_name)
    torch.manual_seed(0)
    encoder = Encoder(neurons, (36, 64), ("pupil", "running", "pupil_x", "pupil_y"), EncoderConfig.preset(preset)).to(device)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    video = torch.rand(batch, frames, 36, 64, device=device) * 255
    behavior = torch.randn(batch, 4, frames, device=device)
    target = torch.poisson(torch.ones(batch, neurons, frames, device=device))

    def step():
        rates = encoder(video, behavior)
        loss = (rates - target * torch.log(rates + 1e-8)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    return {
        "preset": preset,
        "neurons": neurons,
        "params_core": encoder.parameter_count("core"),
        "params_total": encoder.parameter_count("all"),
        "macs_per_frame": encoder.macs_per_frame(),
        "frames_per_second": steps * batch * frames / seconds,
        # On a shared machine wall time depends on the neighbours; CPU time does not (much).
        "frames_per_cpu_second": steps * batch * frames / cpu_seconds,
        "batch": f"{batch}x{frames}",
        "steps": steps,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--neurons", type=int, default=2000)
    ap.add_argument("--presets", nargs="+", default=["fast", "small", "large"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--large-steps", type=int, default=2, help="steps for the large preset (slow on CPU)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--markdown", type=Path, default=None)
    a = ap.parse_args(argv)

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for preset in a.presets:
        cpu_sized = preset != "large"
        row = measure(preset, a.neurons, 8 if cpu_sized else 2, 60 if cpu_sized else 30,
                      a.steps if cpu_sized else a.large_steps, a.device)
        rows.append(row)
        print(row, flush=True)
    lines = [
        "| preset | core params | total params (2,000 neurons) | MACs/frame | train frames/s (wall) "
        "| train frames per CPU-second | batch | device, threads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['params_core']:,} | {r['params_total']:,} | {r['macs_per_frame'] / 1e6:.1f} M "
            f"| {r['frames_per_second']:.1f} | {r['frames_per_cpu_second']:.1f} | {r['batch']} | {r['device']}, {r['threads']} |"
        )
    table = "\n".join(lines)
    print(table)
    if a.markdown:
        a.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
