"""Pooling layers (chapter 5.7). ``stride`` defaults to ``kernel_size``; ``kernel_size > stride`` overlaps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnrun import checks as A
from cnnrun.layers.padding import effective_kernel, output_shape, resolve_padding, symmetric, torch_pad_arg, with_prepad
from cnnrun.layers.registry import register

MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_AVG_FN = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _window(layer, in_shape, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    rank = A.spatial_rank(layer, in_shape)
    kernel = A.int_tuple("kernel_size", kernel_size, rank)
    strides = kernel if stride is None else A.int_tuple("stride", stride, rank)
    dilations = A.int_tuple("dilation", dilation, rank)
    A.boolean("ceil_mode", ceil_mode)
    pads = resolve_padding(padding, in_shape[1:], kernel, strides, dilations)
    if padding not in ("same", "valid") and any(2 * p[0] > effective_kernel(k, d) for p, k, d in zip(pads, kernel, dilations)):
        raise A.ConfigError("padding", f"must be at most half the pooling window {list(kernel)}, got {padding!r}")
    out = output_shape(layer, in_shape, in_shape[0], kernel, strides, dilations, pads, ceil_mode)
    return rank, kernel, strides, dilations, pads, out


@register("maxpool", doc="max pooling; overlapping when kernel_size > stride", section="5.7")
def maxpool(in_shape, *, kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False):
    rank, kernel, strides, dilations, pads, out = _window("maxpool", in_shape, kernel_size, stride, padding,
                                                          dilation, ceil_mode)
    sym = symmetric(pads)
    module = MAXPOOL[rank](kernel, strides, padding=sym or 0, dilation=dilations, ceil_mode=ceil_mode)
    if sym is None:  # SAME with odd total padding: pad with -inf so padded cells never win
        with_prepad(module, pads, value=float("-inf"))
    return module, out


class AvgPoolSame(nn.Module):
    """Average pooling with asymmetric (SAME) padding whose divisor counts only real input cells, as TensorFlow."""

    def __init__(self, kernel, stride, pads):
        super().__init__()
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), torch_pad_arg(pads)

    def forward(self, x):
        pool = _AVG_FN[len(self.kernel)]
        total = pool(F.pad(x, self.pad), self.kernel, self.stride)
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        return total / pool(F.pad(ones, self.pad), self.kernel, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel}, stride={self.stride}, pre_pad={self.pad}"


@register("avgpool", doc="average pooling; padding: same averages over real cells only", section="5.7")
def avgpool(in_shape, *, kernel_size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    rank, kernel, strides, _, pads, out = _window("avgpool", in_shape, kernel_size, stride, padding, 1, ceil_mode)
    A.boolean("count_include_pad", count_include_pad)
    sym = symmetric(pads)
    if sym is None:
        return AvgPoolSame(kernel, strides, pads), out
    include = count_include_pad and padding != "same"
    return AVGPOOL[rank](kernel, strides, padding=sym, ceil_mode=ceil_mode, count_include_pad=include), out


ADAPTIVE_AVGPOOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


@register("adaptive_avgpool", doc="average pooling to a fixed output_size for any input size (AlexNet's 6x6, VGG's "
                                  "7x7); a larger output repeats cells", section="5.7")
def adaptive_avgpool(in_shape, *, output_size=1):
    rank = A.spatial_rank("adaptive_avgpool", in_shape)
    size = A.int_tuple("output_size", output_size, rank)
    return ADAPTIVE_AVGPOOL[rank](size), (in_shape[0], *size)


class GlobalPool(nn.Module):
    """Mean or max over every spatial position: (N, C, *spatial) -> (N, C)."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        flat = x.flatten(2)
        return flat.mean(2) if self.mode == "avg" else flat.amax(2)

    def extra_repr(self):
        return f"mode={self.mode}"


@register("global_avgpool", doc="global average pooling to a (C,) vector (NIN, GoogLeNet)", section="5.8")
def global_avgpool(in_shape):
    A.spatial_rank("global_avgpool", in_shape)
    return GlobalPool("avg"), (in_shape[0],)


@register("global_maxpool", doc="global max pooling to a (C,) vector", section="5.7")
def global_maxpool(in_shape):
    A.spatial_rank("global_maxpool", in_shape)
    return GlobalPool("max"), (in_shape[0],)


class SumPool(nn.Module):
    """Sum over each window (chapter 5.1.4); zero padding adds nothing to a sum."""

    def __init__(self, kernel, stride, pads):
        super().__init__()
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), torch_pad_arg(pads)

    def forward(self, x):
        pooled = _AVG_FN[len(self.kernel)](F.pad(x, self.pad), self.kernel, self.stride)
        return pooled * float(torch.tensor(self.kernel).prod())

    def extra_repr(self):
        return f"kernel_size={self.kernel}, stride={self.stride}, pad={self.pad}"


@register("sumpool", doc="sum pooling over each window", section="5.1.4")
def sumpool(in_shape, *, kernel_size=2, stride=None, padding=0):
    _, kernel, strides, _, pads, out = _window("sumpool", in_shape, kernel_size, stride, padding)
    return SumPool(kernel, strides, pads), out


class SpatialPyramidPool(nn.Module):
    """SPPNet: adaptive max/avg pooling to n x n bins per level, flattened (channel, then bin row by row) and
    concatenated level after level.

    Bin i of n over a cells covers cells floor(i a / n) to ceil((i + 1) a / n) - 1 (PyTorch's adaptive pooling): the
    paper's window ceil(a / n) with stride floor(a / n) when n divides a, and exactly n bins on every input size
    where the paper's rule gives fewer on some small maps, so one model accepts several input sizes.
    """

    def __init__(self, levels, mode: str):
        super().__init__()
        self.levels, self.mode = tuple(levels), mode

    def forward(self, x):
        rank = x.dim() - 2
        pool = {("max", 1): F.adaptive_max_pool1d, ("max", 2): F.adaptive_max_pool2d,
                ("max", 3): F.adaptive_max_pool3d, ("avg", 1): F.adaptive_avg_pool1d,
                ("avg", 2): F.adaptive_avg_pool2d, ("avg", 3): F.adaptive_avg_pool3d}[self.mode, rank]
        return torch.cat([pool(x, n).flatten(1) for n in self.levels], dim=1)

    def extra_repr(self):
        return f"levels={list(self.levels)}, mode={self.mode}"


@register("spp", doc="spatial pyramid pooling: C * sum(n^rank) outputs for any input size (SPPNet); max or avg "
                     "over n bins per dimension, bin i of n over a cells = cells floor(ia/n) .. ceil((i+1)a/n) - 1",
          section="5.7")
def spp(in_shape, *, levels=(1, 2, 4), mode="max"):
    rank = A.spatial_rank("spp", in_shape)
    if isinstance(levels, int) or not isinstance(levels, (list, tuple)) or not levels:
        raise A.ConfigError("levels", f"must be a non-empty list of bin counts such as [1, 2, 4], got {levels!r}")
    for n in levels:
        A.positive_int("levels", n)
    A.choice("mode", mode, ("max", "avg"))
    return SpatialPyramidPool(levels, mode), (in_shape[0] * sum(n ** rank for n in levels),)
