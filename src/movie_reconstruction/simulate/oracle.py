"""The simulated population as a differentiable encoder: reconstruction through the true model.

:class:`PopulationEncoder` computes what :meth:`V1Population.__call__` computes (Gabor or
energy drive, causal temporal kernels, calibrated rectification, running gain, receptive
fields that follow the eye), in torch, so the reconstruction optimiser can invert the true
model. Reconstructing through it from the ground-truth spikes is the reference for a learned
encoder on the same session (benchmarks/simulate_oracle.py). It is not a strict ceiling: the
true rectifier is flat below threshold, which the optimiser finds harder than a learned
encoder's smooth output. It meets the encoder contract (``frame_shape``, ``n_neurons``, ``behavior_channels``,
``forward(video (B,T,H,W), behaviour (B,C,T)) -> (B,N,T)``) and predicts expected spike
counts per movie frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .population import V1Population
from .stimulus import GREY


class PopulationEncoder(torch.nn.Module):
    def __init__(self, population: V1Population):
        super().__init__()
        if population.scale is None:
            raise InputError("the population is not calibrated yet (call calibrate() or simulate a session first)")
        self.frame_shape = tuple(int(v) for v in population.frame_shape)
        self.n_neurons = population.n_neurons
        self.frame_rate = float(population.frame_rate)
        self.eye_shift = bool(population.eye_shift)
        self.behavior_channels = ("running", "pupil_x", "pupil_y") if self.eye_shift else ("running",)
        self.degrees_per_pixel = float(population.degrees_per_pixel)
        self.spontaneous = float(population.spontaneous_rate_hz)
        self.max_rate = float(population.max_rate_hz)
        self.threshold = float(population.threshold_sd)
        self.exponent = float(population.exponent)
        self.half_speed = float(population.running_half_speed_cm_s)
        self.config = {"kind": "simulated population (oracle)", "n_neurons": self.n_neurons}

        def buffer(name, value):
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=torch.float32))

        buffer("filters", population.spatial_filters())  # (2, N, H*W)
        # conv1d correlates, so the causal kernels are flipped: weight[..., -1] is lag 0
        buffer("kernels", population.temporal_kernels()[:, None, ::-1].copy())  # (N, 1, lags)
        buffer("is_complex", population.is_complex.astype(np.float32))
        buffer("drive_mean", population.drive_mean)
        buffer("drive_sd", population.drive_sd)
        buffer("scale", population.scale)
        buffer("running_gain", population.running_gain)
        h, w = self.frame_shape
        # receptive-field centres as readout positions: (x, y) in [-1, 1], align_corners=True
        buffer("rf_centres", np.stack([population.rf_x / (w - 1), population.rf_y / (h - 1)], axis=1) * 2.0 - 1.0)

    def readout_positions(self) -> torch.Tensor:
        return self.rf_centres

    @classmethod
    def from_session(cls, session_folder: str | Path) -> PopulationEncoder:
        """The population of a simulated session (``ground_truth/population.npz``)."""
        path = Path(session_folder) / "ground_truth" / "population.npz"
        if not path.is_file():
            raise InputError("no built-in population saved (the session's rates came from elsewhere)", path)
        with np.load(path) as params:
            return cls(V1Population.from_parameters(params))

    def _retinal(self, video: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        frames = video - GREY
        if not self.eye_shift:
            return frames
        b, t, h, w = frames.shape
        # the numpy model samples in[y + sy, x + sx] bilinearly with edge repeat: grid_sample
        # with align_corners=True and border padding is the same operation
        sx = behavior[:, 1] / self.degrees_per_pixel
        sy = behavior[:, 2] / self.degrees_per_pixel
        ys = torch.arange(h, dtype=frames.dtype, device=frames.device)
        xs = torch.arange(w, dtype=frames.dtype, device=frames.device)
        gx = (xs[None, None, None, :] + sx[:, :, None, None]) * (2.0 / (w - 1)) - 1.0
        gy = (ys[None, None, :, None] + sy[:, :, None, None]) * (2.0 / (h - 1)) - 1.0
        grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1).reshape(b * t, h, w, 2)
        shifted = F.grid_sample(frames.reshape(b * t, 1, h, w), grid, mode="bilinear", padding_mode="border",
                                align_corners=True)
        return shifted.reshape(b, t, h, w)

    def forward(self, video: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        if video.ndim != 4 or tuple(video.shape[2:]) != self.frame_shape:
            raise InputError(f"video must be (batch, frames, {self.frame_shape[0]}, {self.frame_shape[1]}), got {tuple(video.shape)}")
        b, t = video.shape[:2]
        retinal = self._retinal(video.float(), behavior.float()).reshape(b, t, -1)
        projections = torch.einsum("btp,knp->bknt", retinal, self.filters)  # (B, 2, N, T)
        lags = self.kernels.shape[-1]
        padded = F.pad(projections.reshape(b * 2, self.n_neurons, t), (lags - 1, 0))
        filtered = F.conv1d(padded, self.kernels, groups=self.n_neurons).reshape(b, 2, self.n_neurons, t)
        energy = torch.sqrt(filtered[:, 0] ** 2 + filtered[:, 1] ** 2 + 1e-12)
        complex_cell = self.is_complex[None, :, None]
        drive = complex_cell * energy + (1 - complex_cell) * filtered[:, 0]
        z = (drive - self.drive_mean[None, :, None]) / self.drive_sd[None, :, None]
        output = torch.clamp(z - self.threshold, min=0.0) ** self.exponent
        speed = torch.clamp(behavior[:, 0].float(), min=0.0)
        gain = 1.0 + self.running_gain[None, :, None] * (speed / (speed + self.half_speed))[:, None, :]
        driven = self.scale[None, :, None] * gain * output
        rates = self.spontaneous + self.max_rate * torch.tanh(driven / self.max_rate)
        return rates / self.frame_rate
