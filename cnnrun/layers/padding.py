"""Padding and output-size arithmetic, in one place (chapter 5.3).

``same`` is TensorFlow's SAME for any stride: output = ceil(input / stride); when the total padding is odd the extra
row/column goes at the end. ``valid`` pads nothing: output = ceil((input - k_eff + 1) / stride) with the effective
kernel k_eff = dilation * (kernel - 1) + 1. A transposed convolution's ``same`` (output = input * stride) crops its
full output by the pads of the forward SAME convolution it is the gradient of (:func:`transposed_same`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch.nn.functional as F
from torch import nn

from cnnrun.checks import fmt_shape
from cnnrun.errors import ConfigError

Pads = tuple[tuple[int, int], ...]  # (before, after) per spatial dimension


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    return dilation * (kernel - 1) + 1


def output_size(size: int, kernel: int, stride: int = 1, dilation: int = 1, pad: tuple[int, int] = (0, 0),
                ceil_mode: bool = False) -> int:
    """Output length of a sliding window over ``size`` positions padded by ``pad`` (PyTorch's formula)."""
    span = size + pad[0] + pad[1] - effective_kernel(kernel, dilation)
    if span < 0 and not ceil_mode:
        return 0
    # ceil_mode: PyTorch's ceil(span / stride) + 1, which also gives one window when the window overhangs the input
    steps = -(-span // stride) if ceil_mode else span // stride
    if ceil_mode and steps >= 0 and steps * stride >= size + pad[0]:  # the last window must start inside the input
        steps -= 1
    return max(steps + 1, 0)


def same_pad(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) so that the output has ceil(size / stride) positions."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - size, 0)
    return total // 2, total - total // 2


def transposed_same(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int, int]:
    """TensorFlow's SAME for a transposed convolution of ``size`` positions, as PyTorch's ``(padding,
    output_padding)`` plus the cells still to drop at the end.

    TensorFlow's conv_transpose is the gradient of the forward convolution from ``size * stride`` positions onto
    ``size``, so SAME crops that convolution's SAME pads from the full output of (size - 1) * stride + k_eff cells:
    ``before`` at the start and ``after`` (one more when their sum is odd) at the end; a kernel shorter than the
    stride leaves the full output short, and zeros fill it up to size * stride. PyTorch crops ``padding`` from both
    ends and then appends ``output_padding`` cells, so an odd total leaves one cell to drop at the end. None of the
    three depends on ``size``: the same module serves every input size.
    """
    before, after = same_pad(size * stride, kernel, stride, dilation)
    full = (size - 1) * stride + effective_kernel(kernel, dilation)
    output_padding = max(size * stride - (full - 2 * before), 0)
    return before, output_padding, after - before


def resolve_padding(padding: Any, sizes: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                    dilation: Sequence[int]) -> Pads:
    """Turn ``same | valid | int | list`` into explicit (before, after) pads per spatial dimension."""
    rank = len(sizes)
    if padding == "same":
        return tuple(same_pad(n, k, s, d) for n, k, s, d in zip(sizes, kernel, stride, dilation))
    if padding == "valid":
        return ((0, 0),) * rank
    values = [padding] * rank if isinstance(padding, int) and not isinstance(padding, bool) else padding
    if (isinstance(values, (list, tuple)) and len(values) == rank
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)):
        return tuple((v, v) for v in values)
    raise ConfigError("padding", f"must be 'same', 'valid', a non-negative integer or a list of {rank} such "
                                 f"integers, got {padding!r}")


def output_shape(layer: str, in_shape: Sequence[int], channels: int, kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int], pads: Pads, ceil_mode: bool = False) -> tuple[int, ...]:
    """Output shape (channels, *spatial); a ConfigError naming both shapes if a dimension collapses."""
    sizes = in_shape[1:]
    out = tuple(output_size(n, k, s, d, p, ceil_mode) for n, k, s, d, p in zip(sizes, kernel, stride, dilation, pads))
    if any(o <= 0 for o in out):
        window = "x".join(str(effective_kernel(k, d)) for k, d in zip(kernel, dilation))
        padded = "x".join(str(n + p[0] + p[1]) for n, p in zip(sizes, pads))
        raise ConfigError(None, f"{layer} window {window} is larger than its (padded) input {padded}: input shape "
                                f"{fmt_shape(in_shape)} would give output shape {fmt_shape((channels, *out))}; "
                                f"use a smaller kernel, padding: same, or fewer downsampling layers before it")
    return (channels, *out)


def symmetric(pads: Pads) -> tuple[int, ...] | None:
    """The per-dimension padding if every dimension pads equally on both sides, else None."""
    return tuple(p[0] for p in pads) if all(p[0] == p[1] for p in pads) else None


def torch_pad_arg(pads: Pads) -> tuple[int, ...]:
    """``F.pad``'s argument order: last dimension first."""
    return tuple(v for p in reversed(pads) for v in p)


class PrePad(nn.Module):
    """Mixin: pad the input explicitly (asymmetric SAME padding) before the wrapped layer's own forward."""

    pad: tuple[int, ...]
    pad_value: float = 0.0

    def forward(self, x):  # type: ignore[override]
        return super().forward(F.pad(x, self.pad, value=self.pad_value))

    def extra_repr(self):
        return super().extra_repr() + f", pre_pad={self.pad}"


class EndTrim(nn.Module):
    """Mixin: drop the last ``trim`` cells of each spatial dimension of the wrapped layer's output (the odd cell that
    a transposed SAME convolution crops at the end, which PyTorch's symmetric ``padding`` cannot express)."""

    trim: tuple[int, ...]

    def forward(self, x):  # type: ignore[override]
        out = super().forward(x)
        sizes = out.shape[out.dim() - len(self.trim):]
        return out[(..., *(slice(0, n - t) for n, t in zip(sizes, self.trim)))]

    def extra_repr(self):
        return super().extra_repr() + f", end_trim={self.trim}"


def with_prepad(module: nn.Module, pads: Pads, value: float = 0.0) -> nn.Module:
    """Give ``module`` an explicit asymmetric pre-padding while keeping its class's parameters and state-dict names."""
    _retype(module, _PREPADDED, "pre-padded")
    module.pad = torch_pad_arg(pads)
    module.pad_value = value
    return module


def with_end_trim(module: nn.Module, trim: Sequence[int]) -> nn.Module:
    """Make ``module`` drop the last ``trim[i]`` cells of spatial dimension i of its output, keeping its class's
    parameters and state-dict names."""
    _retype(module, _END_TRIMMED, "end-trimmed")
    module.trim = tuple(trim)
    return module


def _retype(module: nn.Module, variants: dict[type, type], what: str) -> None:
    cls = variants.get(type(module))
    if cls is None:
        raise TypeError(f"no {what} variant of {type(module).__name__}")
    module.__class__ = cls


def _variant(mixin: type, base: type) -> type:
    """``base`` with ``mixin``'s forward around its own, named ``<base>Same``."""
    return type(base.__name__ + "Same", (mixin, base), {"__module__": __name__})


Conv1dSame = _variant(PrePad, nn.Conv1d)
Conv2dSame = _variant(PrePad, nn.Conv2d)
Conv3dSame = _variant(PrePad, nn.Conv3d)
MaxPool1dSame = _variant(PrePad, nn.MaxPool1d)
MaxPool2dSame = _variant(PrePad, nn.MaxPool2d)
MaxPool3dSame = _variant(PrePad, nn.MaxPool3d)
ConvTranspose1dSame = _variant(EndTrim, nn.ConvTranspose1d)
ConvTranspose2dSame = _variant(EndTrim, nn.ConvTranspose2d)
ConvTranspose3dSame = _variant(EndTrim, nn.ConvTranspose3d)
_PREPADDED = {nn.Conv1d: Conv1dSame, nn.Conv2d: Conv2dSame, nn.Conv3d: Conv3dSame,
              nn.MaxPool1d: MaxPool1dSame, nn.MaxPool2d: MaxPool2dSame, nn.MaxPool3d: MaxPool3dSame}
_END_TRIMMED = {nn.ConvTranspose1d: ConvTranspose1dSame, nn.ConvTranspose2d: ConvTranspose2dSame,
                nn.ConvTranspose3d: ConvTranspose3dSame}
