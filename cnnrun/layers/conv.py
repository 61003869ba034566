"""Convolutions (chapter 5.3-5.5). The rank (1D/2D/3D) follows the input."""
from __future__ import annotations

from typing import Any

from torch import nn

from cnnrun import checks as A
from cnnrun.layers.padding import (output_shape, resolve_padding, symmetric, transposed_same, with_end_trim,
                                   with_prepad)
from cnnrun.layers.registry import register

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def conv_args(layer: str, in_shape, out_channels, kernel_size, stride, dilation, groups, bias):
    """Checked (rank, out_channels, kernel, strides, dilations, groups) of a convolution-like layer."""
    rank = A.spatial_rank(layer, in_shape)
    out_channels = A.positive_int("out_channels", out_channels)
    kernel = A.int_tuple("kernel_size", kernel_size, rank)
    strides = A.int_tuple("stride", stride, rank)
    dilations = A.int_tuple("dilation", dilation, rank)
    groups = A.positive_int("groups", groups)
    A.boolean("bias", bias)
    if in_shape[0] % groups or out_channels % groups:
        raise A.ConfigError("groups", f"must divide both the input channels ({in_shape[0]}) and out_channels "
                                      f"({out_channels}), got {groups}")
    return rank, out_channels, kernel, strides, dilations, groups


def make_conv(layer: str, in_shape, *, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
              dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
    """Build an N-d convolution with checked arguments; shared by every convolution-like layer type."""
    rank, out_channels, kernel, strides, dilations, groups = conv_args(layer, in_shape, out_channels, kernel_size,
                                                                       stride, dilation, groups, bias)
    in_channels = in_shape[0]
    A.choice("padding_mode", padding_mode, PADDING_MODES)
    pads = resolve_padding(padding, in_shape[1:], kernel, strides, dilations)
    out_shape = output_shape(layer, in_shape, out_channels, kernel, strides, dilations, pads)
    sym = symmetric(pads)
    if padding_mode != "zeros" and sym is None:
        raise A.ConfigError("padding_mode", f"'{padding_mode}' needs symmetric padding; padding: same gives "
                                            f"{pads} here")
    module = CONV[rank](in_channels, out_channels, kernel, stride=strides, padding=sym or 0, dilation=dilations,
                        groups=groups, bias=bias, padding_mode=padding_mode)
    if sym is None:
        with_prepad(module, pads)
    return module, out_shape


@register("conv", doc="standard convolution; 1D/2D/3D by the input's rank; padding same|valid|int|list",
          section="5.3")
def conv(in_shape, *, out_channels, kernel_size=3, stride=1, padding=0, dilation=1, groups=1, bias=True,
         padding_mode="zeros"):
    return make_conv("conv", in_shape, out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                     padding=padding, dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode)


@register("dilated_conv", doc="convolution with holes: a k x k kernel sees k + (k-1)(d-1) (default d=2)",
          section="5.4")
def dilated_conv(in_shape, *, out_channels, kernel_size=3, dilation=2, stride=1, padding=0, bias=True):
    return make_conv("dilated_conv", in_shape, out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                     padding=padding, dilation=dilation, bias=bias)


@register("pointwise_conv", doc="1x1 convolution: cross-channel mixing, channel reduction or expansion",
          section="5.8")
def pointwise_conv(in_shape, *, out_channels, stride=1, groups=1, bias=True):
    return make_conv("pointwise_conv", in_shape, out_channels=out_channels, kernel_size=1, stride=stride,
                     groups=groups, bias=bias)


@register("depthwise_conv", doc="one k x k filter per input channel (times depth_multiplier)", section="5.13")
def depthwise_conv(in_shape, *, kernel_size=3, depth_multiplier=1, stride=1, padding=0, dilation=1, bias=True):
    A.spatial_rank("depthwise_conv", in_shape)
    multiplier = A.positive_int("depth_multiplier", depth_multiplier)
    return make_conv("depthwise_conv", in_shape, out_channels=in_shape[0] * multiplier, kernel_size=kernel_size,
                     stride=stride, padding=padding, dilation=dilation, groups=in_shape[0], bias=bias)


class SeparableConv(nn.Module):
    """Depthwise k x k (no bias) then pointwise 1x1 (with the bias): MobileNet / Xception, chapter 5.4 and 5.13."""

    def __init__(self, depthwise: nn.Module, pointwise: nn.Module):
        super().__init__()
        self.depthwise = depthwise
        self.pointwise = pointwise

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


@register("separable_conv", doc="depthwise k x k then pointwise 1x1; the bias sits on the pointwise conv only "
                                "(Keras' convention): params = C*k*k*m + C*m*out + out", section="5.4")
def separable_conv(in_shape, *, out_channels, kernel_size=3, depth_multiplier=1, stride=1, padding=0, dilation=1,
                   bias=True):
    A.spatial_rank("separable_conv", in_shape)
    multiplier = A.positive_int("depth_multiplier", depth_multiplier)
    depthwise, mid = make_conv("separable_conv", in_shape, out_channels=in_shape[0] * multiplier,
                               kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                               groups=in_shape[0], bias=False)
    pointwise, out = make_conv("separable_conv", mid, out_channels=out_channels, kernel_size=1, bias=bias)
    return SeparableConv(depthwise, pointwise), out


CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@register("transposed_conv", doc="transposed convolution: out = (in-1)s - 2p + d(k-1) + output_padding + 1, "
                                 "PyTorch's formula (also for padding: valid with k < s, where Keras gives in*s); "
                                 "padding: same gives in*s with TensorFlow's values: the d(k-1)+1-s surplus cells "
                                 "are cropped half at each end, the odd one at the end", section="5.15")
def transposed_conv(in_shape, *, out_channels, kernel_size=3, stride=1, padding=0, output_padding=0, dilation=1,
                    groups=1, bias=True):
    """``padding: same`` is TensorFlow's conv_transpose SAME for every kernel, stride and dilation: the full output
    (in-1)s + d(k-1) + 1 loses floor(e/2) cells at the start and ceil(e/2) at the end, e = max(d(k-1)+1-s, 0), and a
    kernel shorter than the stride is followed by zeros up to in*s (see :func:`transposed_same`). Other paddings
    follow PyTorch's formula, so ``padding: valid`` with k < s gives (in-1)s + k where Keras' Conv2DTranspose gives
    in*s."""
    rank, out_channels, kernel, strides, dilations, groups = conv_args("transposed_conv", in_shape, out_channels,
                                                                       kernel_size, stride, dilation, groups, bias)
    extra = A.int_tuple("output_padding", output_padding, rank, minimum=0)
    if padding == "same":  # output = input * stride, as TensorFlow's conv_transpose
        if any(extra):
            raise A.ConfigError("output_padding", f"must be 0 with padding: same (the output is input x stride), "
                                                  f"got {output_padding!r}")
        pads, extra, trim = zip(*(transposed_same(n, k, s, d)
                                  for n, k, s, d in zip(in_shape[1:], kernel, strides, dilations)))
    else:
        pads = tuple(before for before, _ in resolve_padding(padding, in_shape[1:], kernel, strides, dilations))
        trim = (0,) * rank
        if any(op >= max(s, d) for op, s, d in zip(extra, strides, dilations)):
            raise A.ConfigError("output_padding", f"must be smaller than the stride or the dilation, got "
                                                  f"{list(extra)}")
    sizes = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 - t
             for n, k, s, p, d, op, t in zip(in_shape[1:], kernel, strides, pads, dilations, extra, trim)]
    if any(o <= 0 for o in sizes):
        raise A.ConfigError(None, f"transposed_conv output would be {sizes} for input {A.fmt_shape(in_shape)}; "
                                  f"reduce padding")
    module = CONV_T[rank](in_shape[0], out_channels, kernel, stride=strides, padding=pads, output_padding=extra,
                          groups=groups, bias=bias, dilation=dilations)
    if any(trim):
        with_end_trim(module, trim)
    return module, (out_channels, *sizes)


@register("upsample_conv", doc="resize (nearest|bilinear) then a stride-1 convolution: the checkerboard-free "
                               "alternative to transposed_conv", section="5.15.3")
def upsample_conv(in_shape, *, out_channels, scale_factor=2, mode="nearest", kernel_size=3, padding="same",
                  bias=True):
    rank = A.spatial_rank("upsample_conv", in_shape)
    up, mid = _upsample("upsample_conv", in_shape, rank, scale_factor, mode)
    conv_module, out = make_conv("upsample_conv", mid, out_channels=out_channels, kernel_size=kernel_size,
                                 padding=padding, bias=bias)
    return nn.Sequential(up, conv_module), out


def _upsample(layer, in_shape, rank, scale_factor, mode):
    scale = A.int_tuple("scale_factor", scale_factor, rank)
    modes = {1: ("nearest", "linear"), 2: ("nearest", "bilinear", "bicubic"), 3: ("nearest", "trilinear")}[rank]
    A.choice("mode", mode, modes)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    module = nn.Upsample(scale_factor=tuple(float(s) for s in scale), mode=mode, **kwargs)
    return module, (in_shape[0], *[n * s for n, s in zip(in_shape[1:], scale)])


@register("upsample", doc="resize by an integer scale_factor (nearest, (bi|tri)linear, bicubic)", section="5.15")
def upsample(in_shape, *, scale_factor=2, mode="nearest"):
    return _upsample("upsample", in_shape, A.spatial_rank("upsample", in_shape), scale_factor, mode)


FIXED_KERNELS = {  # chapter 5.2, Table 5.3
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "edge_detect": [[1, 0, -1], [0, 0, 0], [-1, 0, 1]],
    "edge_detect_center": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box_blur": [[1 / 9] * 3] * 3,
    "gaussian_blur": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
}


@register("fixed_conv", doc="a fixed (non-trainable) per-channel filter from Table 5.3 or an explicit matrix",
          section="5.2")
def fixed_conv(in_shape, *, kernel="identity", padding="same", stride=1):
    import torch

    if A.spatial_rank("fixed_conv", in_shape, ranks=(2,)) and isinstance(kernel, str):
        A.choice("kernel", kernel, list(FIXED_KERNELS))
        matrix = FIXED_KERNELS[kernel]
    else:
        matrix = kernel
    ok = (isinstance(matrix, list) and matrix and all(isinstance(r, list) and len(r) == len(matrix[0]) for r in matrix)
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in matrix for v in r))
    if not ok:
        raise A.ConfigError("kernel", f"must be one of {', '.join(FIXED_KERNELS)} or a rectangular matrix of "
                                      f"numbers, got {kernel!r}")
    weight = torch.tensor(matrix, dtype=torch.float32)
    channels = in_shape[0]
    module, out = make_conv("fixed_conv", in_shape, out_channels=channels, kernel_size=list(weight.shape),
                            stride=stride, padding=padding, groups=channels, bias=False)
    with torch.no_grad():
        module.weight.copy_(weight.expand(channels, 1, *weight.shape))
    module.weight.requires_grad_(False)
    return module, out
