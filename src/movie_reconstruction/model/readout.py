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
        drive = sample_and_weigh(
            features.reshape(b * t, c, h, w), grid.unsqueeze(2), self.features.t()
        ).reshape(b, t, self.n_neurons)
        return drive.transpose(1, 2) + self.bias.view(1, -1, 1)


# frames per chunk on a CPU: the (frames, channels, neurons) intermediates of 16 frames stay
# in cache (~8 MB for 16 channels and 7,776 neurons), which made the readout's forward and
# backward 1.9x faster on 2 cores than one pass over 300 frames (4 frames: as fast; 1: slower)
CPU_CHUNK_FRAMES = 16


def sample_and_weigh(features: torch.Tensor, grid: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each neuron's drive: the features bilinearly sampled at its read point, weighted by
    its channel weights and summed.

    ``features (F, C, h, w)`` (frames), ``grid (F, N, 1, 2)`` read points as normalised
    ``(x, y)``, ``weights (C, N)`` -> ``(F, N)`` in at least float32. Equal to
    ``(grid_sample(features, grid).squeeze(-1) * weights).sum(1)`` with border padding, but
    computed frame chunk by frame chunk on a CPU, in both directions, without autograd's
    full-size intermediates: in a reconstruction step (7,776 neurons, 300 frames, 2 cores)
    those intermediates and the transposing copy autograd made of them took 60% of the time.
    """
    chunk = features.shape[0] if features.is_cuda else CPU_CHUNK_FRAMES
    dtype = torch.promote_types(features.dtype, torch.float32)  # half precision is summed in float32
    return _SampleAndWeigh.apply(features.to(dtype), grid.to(dtype), weights.to(dtype), chunk)


def _grid_sample(features, grid):
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)


class _SampleAndWeigh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, grid, weights, chunk):
        ctx.save_for_backward(features, grid, weights)
        ctx.chunk = chunk
        frames = features.shape[0]
        drive = features.new_empty(frames, weights.shape[1])
        for s in range(0, frames, chunk):
            sampled = _grid_sample(features[s : s + chunk], grid[s : s + chunk]).squeeze(-1)
            torch.sum(sampled * weights, dim=1, out=drive[s : s + chunk])
        return drive

    @staticmethod
    def backward(ctx, grad):
        features, grid, weights = ctx.saved_tensors
        need_features, need_grid, need_weights = ctx.needs_input_grad[:3]
        grad = grad.contiguous()
        grad_features = torch.zeros_like(features) if need_features else None
        grad_grid = torch.zeros_like(grid) if need_grid else None
        grad_weights = torch.zeros_like(weights) if need_weights else None
        for s in range(0, features.shape[0], ctx.chunk):
            e = s + ctx.chunk
            g = grad[s:e].unsqueeze(1)  # (frames, 1, N)
            if need_features or need_grid:
                # aten's own backward of grid_sample: modes 0 = bilinear, 1 = border padding
                gf, gg = torch.ops.aten.grid_sampler_2d_backward(
                    (g * weights).unsqueeze(-1), features[s:e], grid[s:e], 0, 1, False, [need_features, need_grid]
                )
                if need_features:
                    grad_features[s:e] = gf
                if need_grid:
                    grad_grid[s:e] = gg
            if need_weights:
                grad_weights += (g * _grid_sample(features[s:e], grid[s:e]).squeeze(-1)).sum(0)
        return grad_features, grad_grid, grad_weights, None
