"""A causal spatiotemporal convolutional core.

The core maps a movie ``(B, T, H, W)`` (already normalised) to feature maps
``(B, T, C, h, w)``. Spatial convolutions run frame by frame; temporal convolutions are
depthwise and causal (each output frame sees only itself and earlier frames), so one
forward pass handles a movie of any length and frame ``t``'s features never depend on
frames after ``t``. The start of a movie is padded by repeating its first frame, as if the
first frame had been on screen for a while.

The stem is a full spatial convolution followed by a causal temporal filter per channel:
because both are linear, this is a separable spatiotemporal filter, the classic model of a
V1 simple cell's receptive field. Blocks after it are dense kxk convolutions (fastest on CPUs)
or depthwise-separable ones (1x1, kxk depthwise, 1x1; cheaper in MACs at large widths),
optionally with their own causal temporal filter and a residual path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig


class CausalTemporalFilter(nn.Module):
    """Depthwise causal filter along time on ``(B, T, C, H, W)``: out[t] = sum_j w[c, j] x[t - j]."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        weight = torch.zeros(channels, kernel)
        weight[:, 0] = 1.0  # start as the identity: "the present frame only"
        weight += 0.01 * torch.randn(channels, kernel)
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == 1:
            return x * self.weight[:, 0].view(1, 1, -1, 1, 1)
        b, t, c, h, w = x.shape
        # one depthwise conv1d along time: on 2 CPU cores the small preset trains and
        # reconstructs ~20% faster than with a sum of shifted copies (memory-bound here)
        series = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, c, t)
        padded = torch.cat([series[..., :1].expand(-1, -1, self.kernel - 1), series], dim=-1)
        # conv1d correlates: weight[..., -1] multiplies the present frame
        out = F.conv1d(padded, self.weight.flip(1).unsqueeze(1).to(x.dtype), groups=c)
        return out.reshape(b, h, w, c, t).permute(0, 4, 3, 1, 2)


class _FrameNorm(nn.Module):
    """BatchNorm over all frames of all clips (statistics per channel)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        return self.norm(x.flatten(0, 1)).unflatten(0, (b, t))


def _per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b, t = x.shape[:2]
    return module(x.flatten(0, 1)).unflatten(0, (b, t))


class Block(nn.Module):
    def __init__(self, channels: int, kernel: int, temporal_kernel: int, residual: bool, block_type: str = "dense"):
        super().__init__()
        if block_type == "separable":
            self.spatial = nn.Sequential(
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
                nn.Conv2d(channels, channels, 1, bias=False),
            )
        elif block_type == "dense":
            # On CPUs a small dense convolution is faster than a depthwise-separable one.
            self.spatial = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False)
        else:
            raise ValueError(f"unknown block type {block_type!r}; expected 'dense' or 'separable'")
        self.temporal = CausalTemporalFilter(channels, temporal_kernel) if temporal_kernel > 1 else None
        self.norm = _FrameNorm(channels)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _per_frame(self.spatial, x)
        if self.temporal is not None:
            y = self.temporal(y)
        y = F.elu(self.norm(y))
        return x + y if self.residual else y


class Core(nn.Module):
    """``(B, T, H, W)`` normalised movie -> ``(B, T, C, h, w)`` features, causal in time."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c = config.channels
        self.config = config
        self.stem = nn.Conv2d(
            1, c, config.stem_kernel, stride=config.stride, padding=config.stem_kernel // 2, bias=False
        )
        self.stem_temporal = CausalTemporalFilter(c, config.temporal_kernel)
        self.stem_norm = _FrameNorm(c)
        self.blocks = nn.ModuleList(
            Block(c, config.block_kernel, config.block_temporal_kernel, config.residual, config.block_type)
            for _ in range(config.blocks)
        )

    @property
    def channels(self) -> int:
        return self.config.channels

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = _per_frame(self.stem, video.unsqueeze(2))
        x = F.elu(self.stem_norm(self.stem_temporal(x)))
        for block in self.blocks:
            x = block(x)
        return x


def core_macs_per_frame(config: EncoderConfig, frame_shape: tuple[int, int]) -> int:
    """Multiply-accumulates of the core for one frame (convolutions and temporal filters)."""
    h, w = frame_shape
    c = config.channels
    oh, ow = -(-h // config.stride), -(-w // config.stride)
    pixels = oh * ow
    macs = pixels * c * config.stem_kernel**2 + pixels * c * config.temporal_kernel
    if config.block_type == "dense":
        per_block = pixels * c * c * config.block_kernel**2
    else:
        per_block = pixels * (2 * c * c + c * config.block_kernel**2)
    if config.block_temporal_kernel > 1:
        per_block += pixels * c * config.block_temporal_kernel
    return int(macs + config.blocks * per_block)
