"""transposed_conv against references written here: a naive scatter-add transposed convolution, TensorFlow's SAME rule
for conv_transpose, and TensorFlow's definition of conv_transpose as the gradient of the forward convolution.

TensorFlow's ``conv2d_transpose(x, w, output_shape=n*s, padding="SAME")`` is ``conv2d_backprop_input``: the gradient
of the forward SAME convolution from n*s positions onto n. That convolution pads (``tf.nn.convolution``'s documented
rule) ``pad_total = max((out - 1) * s + k_eff - in, 0)`` with ``pad_before = pad_total // 2`` and the rest after,
out = ceil(in / s). So the transposed output is the full scatter-add output ((n-1)s + k_eff cells) with pad_before
cells cropped at the start and the rest at the end (the odd one at the end), and zeros after it when k_eff < s.
"""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from cnnrun import ConfigError, build_model

CONV = {1: F.conv1d, 2: F.conv2d}


def tf_same_pads(size, kernel, stride, dilation):
    """(before, after) of TensorFlow's forward SAME convolution over ``size`` positions."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def naive_transposed(x, weight, stride, dilation):
    """Full transposed convolution by loops, without bias, as chapter 5.15.2 computes it: every input cell spreads its
    kernel-sized map, placed s cells apart, and overlaps add: x[i] * w[j] lands on output cell i*s + j*d (out =
    (in-1)s + d(k-1) + 1). weight: (C_in, C_out, *kernel), groups 1."""
    sizes = x.shape[2:]
    kernel = weight.shape[2:]
    full = [(n - 1) * s + (k - 1) * d + 1 for n, k, s, d in zip(sizes, kernel, stride, dilation)]
    out = torch.zeros(x.shape[0], weight.shape[1], *full, dtype=x.dtype)
    for pos in itertools.product(*(range(n) for n in sizes)):
        for tap in itertools.product(*(range(k) for k in kernel)):
            target = tuple(p * s + t * d for p, t, s, d in zip(pos, tap, stride, dilation))
            out[(slice(None), slice(None), *target)] += x[(slice(None), slice(None), *pos)] @ \
                weight[(slice(None), slice(None), *tap)]
    return out


def with_bias(out, bias):
    """The bias is added to every output cell after the crop (Keras' Conv2DTranspose: conv_transpose, then bias)."""
    return out + bias.view(1, -1, *[1] * (out.dim() - 2))


def tf_same_crop(full, sizes, kernel, stride, dilation):
    """TensorFlow's SAME window of the full output: n*s cells per dimension starting at the forward SAME conv's
    pad_before; cells past the end of ``full`` are zeros."""
    out = torch.zeros(*full.shape[:2], *[n * s for n, s in zip(sizes, stride)], dtype=full.dtype)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for n, k, s, d, length in zip(sizes, kernel, stride, dilation, full.shape[2:]):
        before, _ = tf_same_pads(n * s, k, s, d)
        kept = min(n * s, length - before)
        src.append(slice(before, before + kept))
        dst.append(slice(0, kept))
    out[tuple(dst)] = full[tuple(src)]
    return out


def backprop_input(x, weight, bias, sizes, kernel, stride, dilation, groups=1):
    """TensorFlow's definition: conv_transpose(x) = d<conv_same(z), x>/dz for z of n*s cells, where conv_same pads
    z with TensorFlow's SAME pads and convolves with the same weight (C_in of x = the forward conv's outputs)."""
    rank = len(sizes)
    z = torch.zeros(x.shape[0], weight.shape[1] * groups, *[n * s for n, s in zip(sizes, stride)],
                    dtype=x.dtype, requires_grad=True)
    pads = [tf_same_pads(n * s, k, s, d) for n, k, s, d in zip(sizes, kernel, stride, dilation)]
    padded = F.pad(z, [v for p in reversed(pads) for v in p])
    y = CONV[rank](padded, weight, stride=stride, dilation=dilation, groups=groups)
    assert y.shape[2:] == x.shape[2:]  # the forward SAME conv maps n*s positions onto n
    (grad,) = torch.autograd.grad((y * x).sum(), z)
    return with_bias(grad, bias)


def built(in_shape, **args):
    torch.manual_seed(0)
    model = build_model({"name": "t", "layers": [{"transposed_conv": args}]}, in_shape).double()
    layer = model.layers[0]
    if layer.bias is not None:
        with torch.no_grad():  # a non-zero bias, so that it must be added once per output cell
            layer.bias.normal_()
    return model, layer


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("sizes", [(7,), (3, 4)], ids=["1d", "2d"])
def test_same_equals_tensorflow_for_every_kernel_stride_and_dilation(sizes, kernel, stride, dilation):
    rank = len(sizes)
    model, layer = built((3, *sizes), out_channels=2, kernel_size=kernel, stride=stride, dilation=dilation,
                         padding="same")
    assert model.output_shape == (2, *[n * stride for n in sizes])
    x = torch.randn(2, 3, *sizes, dtype=torch.float64)
    out = model(x)
    strides, dilations, kernels = (stride,) * rank, (dilation,) * rank, (kernel,) * rank
    full = naive_transposed(x, layer.weight.detach(), strides, dilations)
    expected = with_bias(tf_same_crop(full, sizes, kernels, strides, dilations), layer.bias.detach())
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, backprop_input(x, layer.weight.detach(), layer.bias.detach(), sizes, kernels,
                                                   strides, dilations))


def test_same_with_a_different_kernel_stride_dilation_per_dimension_and_groups():
    sizes, kernel, stride, dilation = (4, 3), (2, 3), (3, 1), (1, 2)
    model, layer = built((4, *sizes), out_channels=6, kernel_size=list(kernel), stride=list(stride),
                         dilation=list(dilation), groups=2, padding="same")
    x = torch.randn(2, 4, *sizes, dtype=torch.float64)
    out = model(x)
    assert out.shape[2:] == (12, 3) and model.output_shape == (6, 12, 3)
    torch.testing.assert_close(out, backprop_input(x, layer.weight.detach(), layer.bias.detach(), sizes, kernel,
                                                   stride, dilation, groups=2))
    # groups: each half of the outputs sees only its half of the inputs (naive reference per group)
    w, b = layer.weight.detach(), layer.bias.detach()
    halves = [naive_transposed(x[:, 2 * g:2 * g + 2], w[2 * g:2 * g + 2], stride, dilation) for g in range(2)]
    torch.testing.assert_close(out, with_bias(tf_same_crop(torch.cat(halves, 1), sizes, kernel, stride, dilation), b))


def test_same_without_bias():
    model, layer = built((3, 4, 5), out_channels=2, kernel_size=3, stride=2, padding="same", bias=False)
    assert layer.bias is None
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    full = naive_transposed(x, layer.weight.detach(), (2, 2), (1, 1))
    torch.testing.assert_close(model(x), tf_same_crop(full, (4, 5), (3, 3), (2, 2), (1, 1)))


@pytest.mark.parametrize("kernel,stride", [(2, 1), (3, 2), (4, 1), (1, 3)])
def test_one_same_layer_serves_every_input_size(kernel, stride):
    model, layer = built((2, 5, 6), out_channels=1, kernel_size=kernel, stride=stride, padding="same")
    for sizes in ((5, 6), (4, 3), (1, 7)):
        x = torch.randn(1, 2, *sizes, dtype=torch.float64)
        full = naive_transposed(x, layer.weight.detach(), (stride,) * 2, (1, 1))
        expected = with_bias(tf_same_crop(full, sizes, (kernel,) * 2, (stride,) * 2, (1, 1)), layer.bias.detach())
        torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("kernel,stride,padding,output_padding,dilation", [
    (2, 3, "valid", 0, 1),  # k < s: PyTorch's (n-1)s + k, where Keras would give n*s
    (3, 2, "valid", 1, 1),
    (3, 2, 1, 1, 1),
    (4, 3, [2, 1], [2, 0], 1),
    (3, 1, 2, 1, 2),  # output_padding below the dilation
])
def test_explicit_padding_follows_pytorchs_formula(kernel, stride, padding, output_padding, dilation):
    """PyTorch crops p cells from both ends of the full output, then appends output_padding cells (zeros past the
    full output): out = (n-1)s - 2p + d(k-1) + output_padding + 1."""
    sizes = (4, 5)
    model, layer = built((3, *sizes), out_channels=2, kernel_size=kernel, stride=stride, padding=padding,
                         output_padding=output_padding, dilation=dilation)
    pads = padding if isinstance(padding, list) else [0 if padding == "valid" else padding] * 2
    extras = output_padding if isinstance(output_padding, list) else [output_padding] * 2
    x = torch.randn(2, 3, *sizes, dtype=torch.float64)
    full = naive_transposed(x, layer.weight.detach(), (stride,) * 2, (dilation,) * 2)
    lengths = [(n - 1) * stride - 2 * p + dilation * (kernel - 1) + op + 1 for n, p, op in zip(sizes, pads, extras)]
    extended = F.pad(full, [0, max(extras)] * 2)  # room for the appended cells
    expected = extended[:, :, pads[0]:pads[0] + lengths[0], pads[1]:pads[1] + lengths[1]]
    expected = with_bias(expected, layer.bias.detach())
    assert model.output_shape == (2, *lengths)
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("args,key,message", [
    ({"padding": "same", "output_padding": 1}, "output_padding", "must be 0 with padding: same"),
    ({"padding": "full"}, "padding", "must be 'same', 'valid', a non-negative integer"),
    ({"stride": 2, "output_padding": 2}, "output_padding", "must be smaller than the stride or the dilation"),
])
def test_bad_paddings_name_the_argument(args, key, message):
    with pytest.raises(ConfigError) as info:
        build_model({"name": "t", "layers": [{"transposed_conv": {"out_channels": 2, **args}}]}, (3, 5, 5))
    assert str(info.value).startswith(f"model.layers[0] (transposed_conv): {key}: {message}")
