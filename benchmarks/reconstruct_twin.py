"""The digital twin as an encoder: the oracle for reconstruction benchmarks.

The twin (``../shared/twin/make_twin_dataset.py``) generated the benchmark dataset, so
reconstructing through the twin itself, from the same noisy responses, is the ceiling any
learned encoder can approach. This module imports the twin's code from a path given at run
time (nothing is copied into the project) and wraps it in a ``torch.nn.Module`` that meets
the encoder contract: ``forward(video (B, T, H, W) 0..255, behavior (B, C, T)) -> (B, N, T)``,
causal in time, differentiable with respect to the video, with the twin's temporal kernel and
latency read from the dataset's ``twin.json``.

Two kinds of twin dataset are covered, told apart by ``twin.json``:

- the plain twin: every neuron's rate is scaled alike by running,
  ``1 + 0.15 tanh(running / 10)``; the oracle takes the ``running`` channel only;
- a twin made with ``--behaviour-effects``: the eye position moves the image on the retina by
  ``gaze_px * (pupil_x, pupil_y)`` pixels after the temporal filter and before the CNN (so
  receptive fields move with the eye), and each neuron ``i`` is scaled by
  ``exp(running_i tanh(running / 10) + pupil_i (pupil - 20) / 8)`` with its own factors from
  ``ground_truth/behaviour_effects.npz``; the oracle takes ``pupil``, ``running``, ``pupil_x``
  and ``pupil_y``. ``behaviour_effects=False`` builds the plain twin's oracle for such a
  dataset instead (what the oracle did before it knew the effects: it does not reproduce it).

Behaviour channels are found by name, in the order the recording reports them
(``read_sensorium``: ``behavior`` (pupil, running) and ``pupil_center`` (x, y) stacked into
``pupil, running, pupil_x, pupil_y``); reconstruction hands an encoder its
``behavior_channels`` by name (``reconstruct.inputs.behavior_for``), so
``reconstruct_quality.py`` and ``reconstruct_speed.py`` feed both kinds correctly.

Not a benchmark by itself; ``reconstruct_quality.py`` and ``reconstruct_speed.py`` use it.
Run as a script it checks itself against the stored noise-free rates of one trial (a dataset
written with ``--save-rates``)::

    PYTHONPATH=src python benchmarks/reconstruct_twin.py --dataset ~/.cache/movie-recon/twin-full --trial 120
    PYTHONPATH=src python benchmarks/reconstruct_twin.py --dataset /tmp/twin-behaviour --trial 4 \\
        [--ignore-behaviour-effects]
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# The recording's behaviour channel names (movie_reconstruction.recording.BEHAVIOR_CHANNELS)
PUPIL, RUNNING, PUPIL_X, PUPIL_Y = "pupil", "running", "pupil_x", "pupil_y"
PLAIN_CHANNELS = (RUNNING,)
EFFECT_CHANNELS = (PUPIL, RUNNING, PUPIL_X, PUPIL_Y)


def import_twin_script(script: Path):
    spec = importlib.util.spec_from_file_location("_twin_script", str(script))
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import the twin script {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shift_on_retina(frames: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Move each frame ``(F, H, W)`` by ``shift_px (F, 2)`` = ``(dx, dy)`` pixels, bilinearly,
    repeating the edges: ``out[y, x] = in[y - dy, x - dx]``, so content at pixel ``p`` appears
    at ``p + d``. The twin's gaze shift, on the frames' device and differentiable in the frames."""
    f, h, w = frames.shape
    theta = torch.zeros(f, 2, 3, dtype=frames.dtype, device=frames.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    shift = shift_px.to(frames.dtype)
    theta[:, 0, 2] = -2.0 * shift[:, 0] / (w - 1)
    theta[:, 1, 2] = -2.0 * shift[:, 1] / (h - 1)
    grid = F.affine_grid(theta, [f, 1, h, w], align_corners=True)
    return F.grid_sample(frames[:, None], grid, align_corners=True, padding_mode="border")[:, 0]


def recording_channels(dataset: Path) -> tuple[str, ...]:
    """The behaviour channel names the project's reader reports for a Sensorium folder."""
    from movie_reconstruction.io.sensorium import read_sensorium

    return tuple(read_sensorium(dataset).behavior_channels)


class TwinOracle(torch.nn.Module):
    """The twin's static CNN + its temporal filter, latency and behaviour effects, as an encoder.

    ``behaviour_effects``: None follows the dataset (its ``twin.json``); False ignores a
    ``--behaviour-effects`` twin's effects (the plain twin's model); True requires them.
    ``behavior_channels``: the recording's channel names, in its order (default: what
    ``read_sensorium`` reports for ``dataset``); the oracle asks for the ones it needs, by name.
    """

    def __init__(self, twin_dir: Path, dataset: Path, neuron_ids=None, frame_batch: int = 300, *,
                 behaviour_effects: bool | None = None, behavior_channels=None):
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
        effects = meta.get("behaviour_effects")
        if behaviour_effects is None:
            behaviour_effects = effects is not None
        if behaviour_effects and effects is None:
            raise ValueError(f"{dataset} was made without --behaviour-effects: there are no effects to apply")
        self.behaviour_effects = bool(behaviour_effects)
        self.register_buffer("kernel", torch.tensor(meta["temporal_kernel"], dtype=torch.float32))
        self.latency = int(meta["latency_frames"])
        unit_ids = np.load(dataset / "meta/neurons/unit_ids.npy")
        if neuron_ids is None:
            neuron_ids = unit_ids
        neuron_ids = np.asarray(neuron_ids)
        self.register_buffer("idx", torch.as_tensor(neuron_ids, dtype=torch.long))
        self.frame_shape = (script.H, script.W)
        self.n_neurons = int(self.idx.numel())
        self.frame_batch = frame_batch

        needed = EFFECT_CHANNELS if self.behaviour_effects else PLAIN_CHANNELS
        available = tuple(behavior_channels) if behavior_channels is not None else recording_channels(dataset)
        missing = [c for c in needed if c not in available]
        if missing:
            raise ValueError(f"the recording has no behaviour channel(s) {missing} (it has {list(available)})")
        self.behavior_channels = tuple(c for c in available if c in needed)
        self.gaze_px = 0.0
        if self.behaviour_effects:
            self.gaze_px = float(effects["gaze_px"])
            factors = np.load(dataset / effects["per_neuron"])
            if not np.isclose(float(factors["gaze_px"]), self.gaze_px):
                raise ValueError(f"gaze_px differs between twin.json and {effects['per_neuron']}")
            # the factors are in the dataset's neuron order; neuron_ids are the twin's unit ids
            position = {int(u): i for i, u in enumerate(unit_ids)}
            unknown = [int(u) for u in neuron_ids if int(u) not in position]
            if unknown:
                raise ValueError(f"neurons {unknown[:5]} are not in the dataset: their behaviour effects are unknown")
            rows = np.array([position[int(u)] for u in neuron_ids], dtype=np.int64)
            self.register_buffer("running_factor", torch.from_numpy(np.asarray(factors["running"], np.float32)[rows]))
            self.register_buffer("pupil_factor", torch.from_numpy(np.asarray(factors["pupil"], np.float32)[rows]))
        self.config = {"kind": "twin oracle", "dataset": str(dataset), "latency": self.latency,
                       "behaviour_effects": self.behaviour_effects, "gaze_px": self.gaze_px}

    def readout_positions(self):
        """The twin's read points (normalised x, y) on its feature map, at pupil_center 0."""
        return self.twin.mu[self.idx]

    def channel(self, behavior: torch.Tensor, name: str) -> torch.Tensor:
        """One behaviour channel ``(B, T)`` of ``behavior (B, C, T)``, by name."""
        return behavior[:, self.behavior_channels.index(name)]

    def forward(self, video, behavior):
        b, t, h, w = video.shape
        x = (video - 128.0) / 64.0
        k = self.kernel.numel()
        padded = torch.cat([x[:, :1].expand(b, k - 1, h, w), x], 1)
        filtered = sum(self.kernel[j] * padded[:, k - 1 - j : k - 1 - j + t] for j in range(k))
        if self.behaviour_effects:  # the eye moves the filtered image on the retina, before the CNN
            centre = torch.stack([self.channel(behavior, PUPIL_X), self.channel(behavior, PUPIL_Y)], -1)
            filtered = shift_on_retina(filtered.reshape(b * t, h, w), centre.reshape(b * t, 2) * self.gaze_px)
        frames = filtered.reshape(b * t, 1, h, w)
        rates = torch.cat(
            [self.twin(frames[s : s + self.frame_batch], None, self.idx) for s in range(0, b * t, self.frame_batch)]
        ).reshape(b, t, -1)
        if self.latency:
            rates = torch.cat([rates[:, :1].expand(b, self.latency, -1), rates[:, : t - self.latency]], 1)
        running = self.channel(behavior, RUNNING)
        if self.behaviour_effects:  # each neuron's own running and arousal modulation, at the response frame
            dilation = (self.channel(behavior, PUPIL) - 20) / 8
            log_gain = (self.running_factor * torch.tanh(running / 10)[..., None]
                        + self.pupil_factor * dilation[..., None])
            return (rates * torch.exp(log_gain)).transpose(1, 2)
        gain = 1 + 0.15 * torch.tanh(running / 10)
        return (rates * gain[:, :, None]).transpose(1, 2)


def default_paths():
    repo = Path(__file__).resolve().parents[1]
    return repo.parent / "shared" / "twin", Path.home() / ".cache/movie-recon/twin-full"


def self_check(twin_dir: Path, dataset: Path, trial: int, *, behaviour_effects: bool | None = None):
    """``(max |oracle - stored rates|, mean stored rate, oracle)`` for one trial (its Sensorium
    file number), with the behaviour handed over by name as reconstruction does."""
    from movie_reconstruction.io.sensorium import read_sensorium
    from movie_reconstruction.reconstruct.inputs import behavior_for

    recording = read_sensorium(dataset)
    where = np.flatnonzero(np.asarray(recording.trial_ids) == trial)
    if where.size == 0:
        raise SystemExit(f"trial {trial} is not in {dataset} (trials {recording.trial_ids.min()}..{recording.trial_ids.max()})")
    data = recording.trial(int(where[0]))
    oracle = TwinOracle(twin_dir, dataset, behaviour_effects=behaviour_effects,
                        behavior_channels=recording.behavior_channels)
    video = torch.from_numpy(np.array(data.video, dtype=np.float32))[None]
    behavior = torch.from_numpy(behavior_for(oracle, data))[None]
    with torch.no_grad():
        rates = oracle(video, behavior)[0].numpy()
    stored = np.load(Path(dataset) / f"ground_truth/rates/{trial}.npy")
    return float(np.abs(rates - stored).max()), float(stored.mean()), oracle


if __name__ == "__main__":  # a self-check: the wrapper reproduces the stored noise-free rates
    import argparse

    twin_dir, dataset = default_paths()
    parser = argparse.ArgumentParser(description="Check that the twin oracle reproduces the dataset's noise-free rates.")
    parser.add_argument("--twin-dir", type=Path, default=twin_dir)
    parser.add_argument("--dataset", type=Path, default=dataset)
    parser.add_argument("--trial", type=int, default=120, help="Sensorium trial number (data/videos/TRIAL.npy)")
    parser.add_argument("--ignore-behaviour-effects", action="store_true",
                        help="for a --behaviour-effects twin: the plain twin's model, to see what the effects add")
    args = parser.parse_args()
    error, mean_rate, oracle = self_check(args.twin_dir, args.dataset, args.trial,
                                          behaviour_effects=False if args.ignore_behaviour_effects else None)
    kind = f"behaviour effects (gaze {oracle.gaze_px:g} px)" if oracle.behaviour_effects else "plain running gain"
    print(f"max |oracle - stored rates| = {error:.2e} (mean rate {mean_rate:.3f}; oracle: {kind}; "
          f"channels {list(oracle.behavior_channels)})")
