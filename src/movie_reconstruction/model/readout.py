"""Per-neuron Gaussian readout (in the style of Lurz et al. 2021) and the pupil-position shifter.

Each neuron reads the core's feature vector at one point of the visual field, its
receptive-field centre ``mu`` (normalised ``(x, y)`` in [-1, 1], with -1 and 1 the frame's
edges), and weights the channels with its own feature vector. While training, the read point
is jittered with a learned per-neuron Gaussian (``sigma``), which lets gradients find the
centre from afar; in evaluation the mean is used, so predictions are deterministic.

When ROI positions are known (imaging-field pixels, or Sensorium's cortical coordinates), the
centres are predicted from them by a small network shared by all neurons plus a per-neuron
offset: retinotopy makes neighbours in cortex look at neighbouring parts of the screen, so
few data suffice to place thousands of receptive fields.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Shifter(nn.Module):
    """Maps pupil position ``(B, 2, T)`` (normalised) to a shift of all read points ``(B, T, 2)``."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2), nn.Tanh())
        nn.init.zeros_(self.net[2].weight)  # start with no shift
        nn.init.zeros_(self.net[2].bias)

    def forward(self, pupil_xy: torch.Tensor) -> torch.Tensor:
        return self.net(pupil_xy.transpose(1, 2))


class GaussianReadout(nn.Module):
    def __init__(
        self,
        n_neurons: int,
        channels: int,
        *,
        init_sigma: float = 0.1,
        positions=None,
        position_hidden: int = 16,
        init_mu_range: float = 0.5,
    ):
        super().__init__()
        self.n_neurons = n_neurons
        self.features = nn.Parameter(0.01 * torch.randn(n_neurons, channels))
        self.bias = nn.Parameter(torch.zeros(n_neurons))
        self.sigma = nn.Parameter(torch.full((n_neurons, 2), float(init_sigma)))
        self.mu_offset = nn.Parameter(torch.zeros(n_neurons, 2))
        if positions is not None:
            p = torch.as_tensor(positions, dtype=torch.float32)
            if p.ndim != 2 or p.shape[0] != n_neurons:
                raise ValueError(f"positions must be ({n_neurons}, dims), got {tuple(p.shape)}")
            centre = p.mean(0)
            scale = (p - centre).abs().max().clamp_min(1e-6)
            self.register_buffer("positions", (p - centre) / scale)
            self.position_net = nn.Sequential(
                nn.Linear(p.shape[1], position_hidden), nn.ELU(), nn.Linear(position_hidden, 2)
            )
            nn.init.normal_(self.position_net[2].weight, std=0.01)
            nn.init.zeros_(self.position_net[2].bias)
        else:
            self.positions = None
            self.position_net = None
            with torch.no_grad():
                self.mu_offset.uniform_(-init_mu_range, init_mu_range)

    def mu(self) -> torch.Tensor:
        """Receptive-field centres ``(neurons, 2)`` as normalised ``(x, y)``."""
        mu = self.mu_offset
        if self.position_net is not None:
            mu = mu + torch.tanh(self.position_net(self.positions))
        return mu.clamp(-1.0, 1.0)

    def forward(self, features: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """``features (B, T, C, h, w)`` and optional ``shift (B, T, 2)`` -> ``(B, neurons, T)`` drive."""
        b, t, c, h, w = features.shape
        grid = self.mu().unsqueeze(0).expand(b * t, -1, -1)
        if self.training:
            grid = grid + self.sigma.unsqueeze(0) * torch.randn_like(grid)
        if shift is not None:
            grid = grid + shift.reshape(b * t, 1, 2)
        sampled = F.grid_sample(
            features.reshape(b * t, c, h, w),
            grid.unsqueeze(2).to(features.dtype),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )  # (B*T, C, N, 1)
        sampled = sampled.squeeze(-1).reshape(b, t, c, self.n_neurons)
        # An explicit product and sum: einsum lowers this to many small copies on CPU.
        drive = (sampled * self.features.t().to(sampled.dtype)).sum(2)  # (B, T, N)
        return drive.transpose(1, 2) + self.bias.view(1, -1, 1)
