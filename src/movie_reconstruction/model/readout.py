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

import warnings

import numpy as np
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
        drive = sample_and_weigh(features.reshape(b * t, c, h, w), self.read_points(b, t, shift), self.features.t())
        return self.arrange(drive, b, t)

    def read_points(self, batch: int, frames: int, shift: torch.Tensor | None) -> torch.Tensor:
        """Each frame's read points ``(batch * frames, neurons, 1, 2)`` (jittered while training)."""
        grid = self.mu().unsqueeze(0).expand(batch * frames, -1, -1)
        if self.training:
            grid = grid + self.sigma.unsqueeze(0) * torch.randn_like(grid)
        if shift is not None:
            grid = grid + shift.reshape(batch * frames, 1, 2)
        return grid.unsqueeze(2)

    def arrange(self, drive: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Sampled drive ``(batch * frames, neurons)`` -> ``(batch, neurons, frames)`` with the bias."""
        return drive.reshape(batch, frames, self.n_neurons).transpose(1, 2) + self.bias.view(1, -1, 1)


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


# Sampling matrices take 64 bytes per neuron and frame (4 read weights and their column
# indices, and the same transposed); frames beyond this budget keep grid_sample.
SAMPLING_MATRIX_BUDGET_BYTES = 1 << 30
BYTES_PER_NEURON_FRAME = 64


class FixedReadPoints:
    """The readout for read points that stay where they are from call to call.

    In evaluation mode with a fixed behaviour (pixel optimisation), each frame's read points
    (receptive-field centres plus that frame's pupil shift) never move, so bilinear sampling
    is a fixed sparse matrix with four weights per neuron and frame. On a CPU this builds
    those matrices, and their transposes for the backward pass, once (frame chunk by frame
    chunk), and multiplies by them: for the twin's 7,776 neurons this alone makes a whole
    pixel-gradient step of the small encoder 1.37x faster on 2 cores
    (benchmarks/prepared_forward.py, docs/reconstruction_benchmark.md). The result
    equals the readout's (border padding, ``align_corners=False``) up to float rounding.
    Frames beyond :data:`SAMPLING_MATRIX_BUDGET_BYTES`, and every frame on other devices, keep
    grid_sample at the fixed read points. The readout's parameters must be frozen.

    ``features`` given to a call are ``(B, T, C, h, w)`` with ``(B, T) = movie_shape`` and
    ``(h, w) = features_shape``; the result is the drive ``(B, neurons, T)``, bias included.
    """

    def __init__(self, readout: GaussianReadout, shift, movie_shape: tuple[int, int], features_shape: tuple[int, int]):
        if readout.training or any(p.requires_grad for p in readout.parameters()):
            raise ValueError("fixed read points need the readout in evaluation mode with frozen parameters")
        self.readout = readout
        self.movie_shape = tuple(int(n) for n in movie_shape)
        self.features_shape = tuple(int(n) for n in features_shape)
        batch, frames = self.movie_shape
        h, w = self.features_shape
        with torch.no_grad():
            self.grid = readout.read_points(batch, frames, shift)
            self.weights_by_neuron = readout.features.float().contiguous()  # (N, C): rows of a (frames, N, C) product
            self.weights = self.weights_by_neuron.t()  # (C, N), as sample_and_weigh takes them
            affordable = SAMPLING_MATRIX_BUDGET_BYTES // (BYTES_PER_NEURON_FRAME * readout.n_neurons)
            sparse = self.grid.device.type == "cpu" and min(h, w) >= 2
            # whole chunks only, so that a chunk's matrices never straddle the two paths
            self.sparse_frames = min(batch * frames, affordable // CPU_CHUNK_FRAMES * CPU_CHUNK_FRAMES) if sparse else 0
            self.matrices = (
                _sampling_matrices(self.grid[: self.sparse_frames, :, 0].float(), h, w, CPU_CHUNK_FRAMES)
                if self.sparse_frames
                else []
            )

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = features.shape
        if (b, t) != self.movie_shape or (h, w) != self.features_shape:
            raise ValueError(
                f"read points fixed for {self.movie_shape} frames of {self.features_shape} features, "
                f"got {(b, t)} of {(h, w)}"
            )
        frames = features.reshape(b * t, c, h, w)
        split = self.sparse_frames
        parts = []
        if split:
            # channels last: each sampled location is one contiguous row of C features
            rows = frames[:split].float().permute(0, 2, 3, 1).reshape(split * h * w, c)
            parts.append(_SparseSampleAndWeigh.apply(rows, self.weights_by_neuron, self.matrices, h * w))
        if split < b * t:
            parts.append(sample_and_weigh(frames[split:], self.grid[split:], self.weights))
        return self.readout.arrange(torch.cat(parts) if len(parts) > 1 else parts[0], b, t)


def _sampling_matrices(grid: torch.Tensor, h: int, w: int, chunk: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Bilinear sampling at ``grid`` (frames, N, 2) as sparse CSR matrices, one pair per chunk of
    frames: (frames * N, frames * h * w) and its transpose, int32-indexed, columns ascending."""
    import scipy.sparse

    frames, n = grid.shape[:2]
    # grid_sample's unnormalisation for align_corners=False, then border padding's clamp
    x = (((grid[..., 0] + 1) * w - 1) / 2).clamp(0, w - 1)
    y = (((grid[..., 1] + 1) * h - 1) / 2).clamp(0, h - 1)
    # the lower corner stops one cell short of the edge, so the upper one is always inside;
    # a point on the last row or column then puts all its weight on the upper corner
    x0, y0 = x.floor().clamp(max=w - 2), y.floor().clamp(max=h - 2)
    fx, fy = x - x0, y - y0
    frame_in_chunk = (torch.arange(frames) % chunk).view(-1, 1)
    base = (y0 * w + x0).to(torch.int32) + (frame_in_chunk * (h * w)).to(torch.int32)
    corners = torch.tensor([0, 1, w, w + 1], dtype=torch.int32)
    columns = (base.unsqueeze(-1) + corners).reshape(frames, -1).numpy()  # ascending within each row
    weights = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1).reshape(frames, -1).numpy()
    matrices = []
    for s in range(0, frames, chunk):
        e = min(s + chunk, frames)
        rows, cells = (e - s) * n, (e - s) * h * w
        row_starts = np.arange(0, 4 * rows + 1, 4, dtype=np.int32)
        forward = scipy.sparse.csr_matrix((weights[s:e].ravel(), columns[s:e].ravel(), row_starts), shape=(rows, cells))
        transposed = forward.tocsc()  # a counting sort: the transpose's rows, in ascending column order
        matrices.append((_csr(forward, (rows, cells)), _csr(transposed, (cells, rows))))
    return matrices


def _csr(matrix, size) -> torch.Tensor:
    """A scipy CSR (or CSC, read as its transpose's CSR) matrix as a torch CSR tensor."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # built to be valid above, so torch's invariant check would only repeat the work
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int32)),
            torch.from_numpy(matrix.indices.astype(np.int32)),
            torch.from_numpy(matrix.data),
            size=size,
            check_invariants=False,
        )


class _SparseSampleAndWeigh(torch.autograd.Function):
    """``rows (frames * h * w, C)`` -> drive ``(frames, N)``; the gradient flows to the rows only."""

    @staticmethod
    def forward(ctx, rows, weights_by_neuron, matrices, cells_per_frame):
        ctx.save_for_backward(weights_by_neuron)
        ctx.matrices = matrices
        n, c = weights_by_neuron.shape
        drives, start = [], 0
        for forward, _ in matrices:
            frames = forward.shape[0] // n
            sampled = forward @ rows[start : start + frames * cells_per_frame]  # (frames * N, C)
            drives.append((sampled.view(frames, n, c) * weights_by_neuron).sum(-1))
            start += frames * cells_per_frame
        return torch.cat(drives)

    @staticmethod
    def backward(ctx, grad):
        (weights_by_neuron,) = ctx.saved_tensors
        n, c = weights_by_neuron.shape
        grads, start = [], 0
        for _, transposed in ctx.matrices:
            frames = transposed.shape[1] // n
            spread = grad[start : start + frames].unsqueeze(-1) * weights_by_neuron  # (frames, N, C)
            grads.append(transposed @ spread.reshape(frames * n, c))
            start += frames
        return torch.cat(grads), None, None, None
