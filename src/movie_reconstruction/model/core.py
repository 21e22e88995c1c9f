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

from collections.abc import Callable
from dataclasses import dataclass

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
        return self.finish(x, _per_frame(self.spatial, x))

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Everything after the spatial convolution ``y`` of input ``x``: all of it pointwise in space."""
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
        x = self._finish_stem(video, _per_frame(self.stem, video.unsqueeze(2)))
        for block in self.blocks:
            x = block(x)
        return x

    def _finish_stem(self, stem_input: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        del stem_input  # no residual around the stem, which changes the resolution
        return F.elu(self.stem_norm(self.stem_temporal(y)))

    def stages(self) -> list[tuple[nn.Module, Callable]]:
        """``(spatial convolution, finish)`` of each stage: ``finish(stage input, convolved)`` is
        pointwise in space, so a stage's output on any window needs its input on that window
        grown by the convolution's reach, and nothing else."""
        return [(self.stem, self._finish_stem)] + [(block.spatial, block.finish) for block in self.blocks]


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


# ---------------------------------------------------------------------------- fixed surround
# Below this fraction of the full core's multiply-accumulates, computing only the changing
# part of each feature map is worth its bookkeeping (two copies of a feature map per stage).
WORTHWHILE_COST_FRACTION = 0.9


def _unpadded_geometry(module: nn.Module) -> tuple[int, int, int]:
    """``(kernel, stride, padding)`` of a stage's square convolution or chain of them.

    A chain's zero padding can be moved in front of it only while no convolution before a
    padded one has a bias or a stride (zeros then stay zeros), which holds for our blocks.
    """
    convs = list(module) if isinstance(module, nn.Sequential) else [module]
    kernel, stride, padding = 1, 1, 0
    for i, conv in enumerate(convs):
        square = isinstance(conv, nn.Conv2d) and all(
            len(set(v)) == 1 for v in (conv.kernel_size, conv.stride, conv.padding)
        )
        if not square or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise NotImplementedError(f"no fixed-surround evaluation for {conv!r}")
        if conv.padding[0] and any(c.bias is not None or c.stride != (1, 1) for c in convs[:i]):
            raise NotImplementedError(f"padding inside {module!r} cannot be moved in front of it")
        kernel += (conv.kernel_size[0] - 1) * stride
        padding += conv.padding[0] * stride
        stride *= conv.stride[0]
    return kernel, stride, padding


def _convolve_unpadded(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The stage's convolution(s) on an input the caller has already padded."""
    for conv in list(module) if isinstance(module, nn.Sequential) else [module]:
        x = F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)
    return x


def _affected_span(changing: tuple[int, int], n_in: int, kernel: int, stride: int, padding: int):
    """Output cells of one axis whose window ``[stride*i - padding, ... + kernel)`` meets the
    changing input cells ``[a0, a1)``, the input they read (clipped to the axis) and the zeros
    of padding they need beyond it. Returns ``(out span, read span, (zeros before, after), n_out)``."""
    a0, a1 = changing
    n_out = (n_in + 2 * padding - kernel) // stride + 1
    o0 = max(0, (a0 + padding - kernel) // stride + 1)
    o1 = min(n_out, -(-(a1 + padding) // stride))
    lo, hi = stride * o0 - padding, stride * (o1 - 1) - padding + kernel
    return (o0, o1), (max(lo, 0), min(hi, n_in)), (max(-lo, 0), max(hi - n_in, 0)), n_out


@dataclass
class _StageWindow:
    rows: tuple[int, int]  # output cells computed, on the stage's output grid
    cols: tuple[int, int]
    read_rows: tuple[int, int]  # the input they read, on the stage's input grid
    read_cols: tuple[int, int]
    pad: tuple[int, int, int, int]  # zeros beyond the input grid: left, right, top, bottom (F.pad's order)
    inner: tuple[int, int] | None  # where the output window sits in the padded input (stride 1), for residuals
    reference: torch.Tensor | None = None  # the reference movie's stage input on the read window (not for the stem)


def _stage_windows(core: Core, changing: torch.Tensor) -> tuple[list[_StageWindow], float]:
    """Each stage's window for a changing region, and the fraction of the core's convolution
    work that computing only those windows leaves."""
    if changing.ndim != 2 or not changing.any():
        raise ValueError(f"changing must be a non-empty boolean (height, width) map, got shape {tuple(changing.shape)}")
    rows, cols = changing.any(1).nonzero()[:, 0], changing.any(0).nonzero()[:, 0]
    span_rows, span_cols = (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)
    n_rows, n_cols = changing.shape
    windows, computed_macs, full_macs = [], 0, 0
    for index, (conv, _) in enumerate(core.stages()):
        kernel, stride, padding = _unpadded_geometry(conv)
        previous = (span_rows, span_cols)
        span_rows, read_rows, pad_rows, out_rows = _affected_span(span_rows, n_rows, kernel, stride, padding)
        span_cols, read_cols, pad_cols, out_cols = _affected_span(span_cols, n_cols, kernel, stride, padding)
        if index > 0 and not (read_rows[0] <= previous[0][0] and previous[0][1] <= read_rows[1]
                              and read_cols[0] <= previous[1][0] and previous[1][1] <= read_cols[1]):
            raise NotImplementedError("a stage reads less than its input stage computes")
        windows.append(
            _StageWindow(span_rows, span_cols, read_rows, read_cols, (*pad_cols, *pad_rows),
                         (padding, padding) if stride == 1 else None)
        )
        macs_per_cell = sum(p.numel() for p in conv.parameters())
        computed_macs += (span_rows[1] - span_rows[0]) * (span_cols[1] - span_cols[0]) * macs_per_cell
        full_macs += out_rows * out_cols * macs_per_cell
        n_rows, n_cols = out_rows, out_cols
    return windows, computed_macs / full_macs


def fixed_surround_cost(core: Core, changing) -> float:
    """The fraction of the core's convolution work a :class:`FixedSurround` for ``changing`` does."""
    return _stage_windows(core, torch.as_tensor(changing, dtype=torch.bool))[1]


class FixedSurround:
    """The core on movies that differ from a reference movie only inside a region of pixels.

    Reconstruction changes only the pixels of its update mask, so every feature whose
    receptive field lies outside that region keeps its value from the first step on. This
    runs the core once on the reference movie, keeps what the changing region cannot reach,
    and afterwards computes each stage only on the cells the region reaches (within the
    region's bounding box grown by the receptive field), reading the rest from the reference.
    The result equals ``core(video)`` up to float rounding, for any movie that equals the
    reference outside ``changing`` (a movie that does not is refused).

    ``reference`` is a normalised movie ``(B, T, H, W)``; ``changing`` a boolean ``(H, W)``.
    Only for a core in evaluation mode (batch statistics would couple all cells).
    """

    def __init__(self, core: Core, reference: torch.Tensor, changing):
        if core.training:
            raise ValueError("a fixed surround needs the core in evaluation mode")
        changing = torch.as_tensor(changing, dtype=torch.bool, device=reference.device)
        if changing.shape != reference.shape[-2:]:
            raise ValueError(f"changing is {tuple(changing.shape)}, the frames {tuple(reference.shape[-2:])}")
        self.core = core
        self.reference = reference.detach()
        self.fixed = ~changing
        self.windows, self.cost_fraction = _stage_windows(core, changing)
        with torch.no_grad():
            x = self.reference.unsqueeze(2)
            for index, (window, (conv, finish)) in enumerate(zip(self.windows, core.stages())):
                if index > 0:  # the stem reads the current movie itself
                    (r0, r1), (c0, c1) = window.read_rows, window.read_cols
                    window.reference = x[..., r0:r1, c0:c1].clone()
                x = finish(x, _per_frame(conv, x))
        self.output = x

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        """``core(video)`` for a normalised movie that equals the reference outside the changing region."""
        if video.shape != self.reference.shape or not torch.equal(
            video.detach()[..., self.fixed], self.reference[..., self.fixed]
        ):
            raise ValueError("this movie differs from the fixed surround's reference outside the changing region")
        x = video.unsqueeze(2)
        live = ((0, x.shape[-2]), (0, x.shape[-1]))  # where x holds the current values, on its grid
        for (conv, finish), window in zip(self.core.stages(), self.windows):
            (r0, r1), (c0, c1) = window.read_rows, window.read_cols
            if window.reference is None:
                stage_input = x[..., r0:r1, c0:c1]
            else:
                stage_input = window.reference.clone()
                stage_input[..., live[0][0] - r0 : live[0][1] - r0, live[1][0] - c0 : live[1][1] - c0] = x
            if any(window.pad):
                stage_input = F.pad(stage_input, window.pad)
            convolved = _per_frame(lambda frames, conv=conv: _convolve_unpadded(conv, frames), stage_input)
            if window.inner is not None:
                top, left = window.inner
                height, width = convolved.shape[-2:]
                stage_input = stage_input[..., top : top + height, left : left + width]
            x = finish(stage_input, convolved)
            live = (window.rows, window.cols)
        out = self.output.clone()
        out[..., live[0][0] : live[0][1], live[1][0] : live[1][1]] = x
        return out
