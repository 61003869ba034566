"""Convolutions (chapter 5.3-5.5). The rank (1D/2D/3D) follows the input."""
from __future__ import annotations

from typing import Any

from torch import nn

from cnnrun.layers import args as A
from cnnrun.layers.padding import output_shape, resolve_padding, symmetric, with_prepad
from cnnrun.layers.registry import register

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def make_conv(layer: str, in_shape, *, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
              dilation: Any = 1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
    """Build an N-d convolution with checked arguments; shared by every convolution-like layer type."""
    rank = A.spatial_rank(layer, in_shape)
    in_channels = in_shape[0]
    out_channels = A.positive_int("out_channels", out_channels)
    kernel = A.int_tuple("kernel_size", kernel_size, rank)
    strides = A.int_tuple("stride", stride, rank)
    dilations = A.int_tuple("dilation", dilation, rank)
    groups = A.positive_int("groups", groups)
    A.boolean("bias", bias)
    A.choice("padding_mode", padding_mode, PADDING_MODES)
    if in_channels % groups or out_channels % groups:
        raise A.ConfigError("groups", f"must divide both the input channels ({in_channels}) and out_channels "
                                      f"({out_channels}), got {groups}")
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
