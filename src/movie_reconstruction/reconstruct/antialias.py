"""Keeping a strided encoder's sampling grid out of the reconstruction (issue 24); a leaf module.

The encoder's stem convolution has stride 2, so the pixel gradient is the features' gradient
spread back onto every second pixel and convolved with the stem's kernel: one of the four
pixel phases of each 2 x 2 cell is favoured, and gradient descent paints that as a period-2
checkerboard (benchmarks/checkerboard_cause.py measures it). Two remedies that need no
retraining:

- ``jitter``: each step the encoder sees the update (the movie minus its start) moved by a
  random whole number of pixels, and autograd moves the gradient back. Over steps every
  phase of the grid is visited equally often, so none is favoured.
- ``gradient_blur``: the gradient is blurred by a spatial Gaussian before it is normalised,
  which removes the period-2 component of each step (a smooth parameterisation of the update).
"""

from __future__ import annotations

import math


def shift_frames(x, dy: int, dx: int):
    """``x (..., H, W)`` moved down by ``dy`` and right by ``dx`` pixels, zeros coming in at the edges."""
    import torch.nn.functional as F

    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + h, left : left + w]


def random_shift(jitter: int, generator) -> tuple[int, int]:
    """A shift ``(dy, dx)`` drawn uniformly from ``-jitter .. jitter`` on each axis (the seed's generator)."""
    import torch

    if jitter <= 0:
        return 0, 0
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
    return int(dy), int(dx)


def jittered(forward, start, dy: int, dx: int):
    """``video -> forward(start + shift(video - start))``: the update moved, the start where it was.

    Moving only the update keeps every pixel outside the update mask (dilated by the shift) at its
    starting value, so a prepared forward pass that assumed so stays exact."""
    if dy == 0 and dx == 0:
        return forward
    return lambda video: forward(start + shift_frames(video - start, dy, dx))


def grow(changing, pixels: int):
    """The boolean ``(H, W)`` map ``changing`` grown by ``pixels`` in every direction (a square)."""
    import torch.nn.functional as F

    if pixels <= 0:
        return changing
    grown = F.max_pool2d(changing.float()[None, None], 2 * pixels + 1, stride=1, padding=pixels)
    return grown[0, 0] > 0


def blur_gradient(grad, sigma: float):
    """Spatial Gaussian blur of ``grad (B, T, H, W)`` (each frame on its own; zero padding)."""
    import torch
    import torch.nn.functional as F

    if not sigma or sigma <= 0:
        return grad
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=grad.dtype, device=grad.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    b, t, h, w = grad.shape
    frames = grad.reshape(b * t, 1, h, w)
    frames = F.conv2d(frames, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    frames = F.conv2d(frames, kernel.view(1, 1, 1, -1), padding=(0, radius))
    return frames.reshape(b, t, h, w)
