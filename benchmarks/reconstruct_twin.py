"""The digital twin as an encoder: the oracle for reconstruction benchmarks.

The twin (``../shared/twin/make_twin_dataset.py``) generated the benchmark dataset, so
reconstructing through the twin itself, from the same noisy responses, is the ceiling any
learned encoder can approach. This module imports the twin's code from a path given at run
time (nothing is copied into the project) and wraps it in a ``torch.nn.Module`` that meets
the encoder contract: ``forward(video (B, T, H, W) 0..255, behavior (B, C, T)) -> (B, N, T)``,
causal in time, with the twin's temporal kernel, latency and running gain read from the
dataset's ``twin.json``.

Not a benchmark by itself; ``reconstruct_quality.py`` and ``reconstruct_speed.py`` use it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch


def import_twin_script(script: Path):
    spec = importlib.util.spec_from_file_location("_twin_script", str(script))
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import the twin script {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TwinOracle(torch.nn.Module):
    """The twin's static CNN + its temporal filter, latency and running gain, as an encoder."""

    def __init__(self, twin_dir: Path, dataset: Path, neuron_ids=None, frame_batch: int = 300):
        super().__init__()
        twin_dir, dataset = Path(twin_dir), Path(dataset)
        script = import_twin_script(twin_dir / "make_twin_dataset.py")
        state = torch.load(twin_dir / "sensorium_sota_model.pth", map_location="cpu", weights_only=True)
        self.twin = script.Twin(state)
        for p in self.twin.parameters():
            p.requires_grad_(False)
        meta = json.loads((dataset / "twin.json").read_text())
        if meta.get("behaviour_input"):
            raise NotImplementedError("this wrapper covers twins without behaviour input channels")
        self.register_buffer("kernel", torch.tensor(meta["temporal_kernel"], dtype=torch.float32))
        self.latency = int(meta["latency_frames"])
        if neuron_ids is None:
            neuron_ids = np.load(dataset / "meta/neurons/unit_ids.npy")
        self.register_buffer("idx", torch.as_tensor(np.asarray(neuron_ids), dtype=torch.long))
        self.frame_shape = (script.H, script.W)
        self.n_neurons = int(self.idx.numel())
        self.behavior_channels = ("running",)
        self.frame_batch = frame_batch
        self.config = {"kind": "twin oracle", "dataset": str(dataset), "latency": self.latency}

    def readout_positions(self):
        return self.twin.mu[self.idx]

    def forward(self, video, behavior):
        b, t, h, w = video.shape
        x = (video - 128.0) / 64.0
        k = self.kernel.numel()
        padded = torch.cat([x[:, :1].expand(b, k - 1, h, w), x], 1)
        filtered = sum(self.kernel[j] * padded[:, k - 1 - j : k - 1 - j + t] for j in range(k))
        frames = filtered.reshape(b * t, 1, h, w)
        rates = torch.cat(
            [self.twin(frames[s : s + self.frame_batch], None, self.idx) for s in range(0, b * t, self.frame_batch)]
        ).reshape(b, t, -1)
        if self.latency:
            rates = torch.cat([rates[:, :1].expand(b, self.latency, -1), rates[:, : t - self.latency]], 1)
        gain = 1 + 0.15 * torch.tanh(behavior[:, 0] / 10)
        return (rates * gain[:, :, None]).transpose(1, 2)


def default_paths():
    repo = Path(__file__).resolve().parents[1]
    return repo.parent / "shared" / "twin", Path.home() / ".cache/movie-recon/twin-full"


if __name__ == "__main__":  # a self-check: the wrapper reproduces the stored noise-free rates
    import argparse

    twin_dir, dataset = default_paths()
    parser = argparse.ArgumentParser(description="Check that the twin oracle reproduces the dataset's noise-free rates.")
    parser.add_argument("--twin-dir", type=Path, default=twin_dir)
    parser.add_argument("--dataset", type=Path, default=dataset)
    parser.add_argument("--trial", type=int, default=120)
    args = parser.parse_args()
    oracle = TwinOracle(args.twin_dir, args.dataset)
    video = np.load(args.dataset / f"data/videos/{args.trial}.npy").transpose(2, 0, 1)
    behavior = np.load(args.dataset / f"data/behavior/{args.trial}.npy")
    with torch.no_grad():
        rates = oracle(torch.from_numpy(video)[None], torch.from_numpy(behavior[1:2])[None])[0].numpy()
    stored = np.load(args.dataset / f"ground_truth/rates/{args.trial}.npy")
    print(f"max |oracle - stored rates| = {np.abs(rates - stored).max():.2e} (mean rate {stored.mean():.3f})")
