"""Local (unshared) and tiled convolution, chapter 5.20-5.21 (DeepFace).

Every output position has its own kernel and bias: parameters = out_h * out_w * (k_h * k_w * C_in * C_out + C_out),
as Keras' LocallyConnected2D. ``tile: [t_h, t_w]`` shares weights between positions t apart (tiled convolution);
``tile: 1`` is an ordinary convolution. Vectorised: one unfold and one einsum, no loop over positions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnrun import checks as A
from cnnrun.layers.padding import output_shape, resolve_padding, torch_pad_arg
from cnnrun.layers.registry import register


class LocalConv(nn.Module):
    """Unshared 1D/2D convolution. ``weight``: (T_h, T_w, C_out, C_in*k_h*k_w); ``bias``: (T_h, T_w, C_out)."""

    def __init__(self, in_channels, out_channels, kernel, stride, dilation, pads, out_sizes, tiles, bias=True):
        super().__init__()
        self.rank = len(kernel)
        # 1D runs as 2D with a height of 1
        self.kernel = (1, *kernel) if self.rank == 1 else tuple(kernel)
        self.stride = (1, *stride) if self.rank == 1 else tuple(stride)
        self.dilation = (1, *dilation) if self.rank == 1 else tuple(dilation)
        self.pad = torch_pad_arg(pads)
        self.out_sizes = (1, *out_sizes) if self.rank == 1 else tuple(out_sizes)
        self.tiles = (1, *tiles) if self.rank == 1 else tuple(tiles)
        fan_in = in_channels * math.prod(self.kernel)
        bound = 1 / math.sqrt(fan_in)  # the default init of nn.Conv2d, per position
        self.weight = nn.Parameter(torch.empty(*self.tiles, out_channels, fan_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(*self.tiles, out_channels).uniform_(-bound, bound)) if bias else None
        index = [torch.arange(n) % t for n, t in zip(self.out_sizes, self.tiles)]
        self.register_buffer("row_index", index[0], persistent=False)
        self.register_buffer("col_index", index[1], persistent=False)

    def forward(self, x):
        if self.rank == 1:
            x = x.unsqueeze(2)
        x = F.pad(x, self.pad) if any(self.pad) else x
        patches = F.unfold(x, self.kernel, dilation=self.dilation, stride=self.stride)  # (N, C*k*k, H*W)
        patches = patches.view(x.shape[0], patches.shape[1], *self.out_sizes)
        untiled = self.tiles == self.out_sizes
        weight = self.weight if untiled else self.weight[self.row_index][:, self.col_index]
        out = torch.einsum("nkhw,hwok->nohw", patches, weight)
        if self.bias is not None:
            bias = self.bias if untiled else self.bias[self.row_index][:, self.col_index]
            out = out + bias.permute(2, 0, 1)
        return out.squeeze(2) if self.rank == 1 else out

    def extra_macs(self, output) -> int:
        return output[0].numel() * self.weight.shape[-1]

    def extra_repr(self):
        return (f"kernel={self.kernel[-self.rank:]}, stride={self.stride[-self.rank:]}, "
                f"tiles={self.tiles[-self.rank:]}, out={self.out_sizes[-self.rank:]}")


@register("local_conv", doc="local (unshared) convolution: a kernel and bias per output position; tile: t gives "
                            "tiled convolution", section="5.20")
def local_conv(in_shape, *, out_channels, kernel_size=3, stride=1, padding=0, dilation=1, bias=True, tile=None):
    rank = A.spatial_rank("local_conv", in_shape, ranks=(1, 2))
    out_channels = A.positive_int("out_channels", out_channels)
    kernel = A.int_tuple("kernel_size", kernel_size, rank)
    strides = A.int_tuple("stride", stride, rank)
    dilations = A.int_tuple("dilation", dilation, rank)
    A.boolean("bias", bias)
    pads = resolve_padding(padding, in_shape[1:], kernel, strides, dilations)
    out = output_shape("local_conv", in_shape, out_channels, kernel, strides, dilations, pads)
    tiles = out[1:] if tile is None else tuple(min(t, n) for t, n in zip(A.int_tuple("tile", tile, rank), out[1:]))
    module = LocalConv(in_shape[0], out_channels, kernel, strides, dilations, pads, out[1:], tiles, bias)
    return module, out
