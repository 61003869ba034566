"""Output sizes against the chapter's formulas (5.3) and against what PyTorch actually computes."""
import math

import pytest
import torch

from cnnrun.layers.padding import output_size, same_pad
from cnnrun.model import build_model


def chapter_valid(i, k, s):
    return math.ceil((i - k + 1) / s)


def chapter_same(i, s):
    return math.ceil(i / s)


@pytest.mark.parametrize("size", [7, 8, 13, 16, 31, 32])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_valid_and_same_follow_the_chapter(size, kernel, stride):
    assert output_size(size, kernel, stride) == chapter_valid(size, kernel, stride)
    assert output_size(size, kernel, stride, pad=same_pad(size, kernel, stride)) == chapter_same(size, stride)


@pytest.mark.parametrize("size,kernel,stride,dilation", [(9, 3, 1, 2), (10, 3, 2, 2), (16, 5, 2, 3), (7, 2, 1, 4)])
def test_dilation_uses_the_effective_kernel(size, kernel, stride, dilation):
    k_eff = kernel + (kernel - 1) * (dilation - 1)  # chapter 5.4 / issue: k + (k-1)(d-1)
    assert output_size(size, kernel, stride, dilation) == chapter_valid(size, k_eff, stride)
    assert output_size(size, kernel, stride, dilation, same_pad(size, kernel, stride, dilation)) == \
        chapter_same(size, stride)


@pytest.mark.parametrize("padding", ["same", "valid", 1, [1, 0]])
@pytest.mark.parametrize("layer", ["conv", "maxpool", "avgpool"])
@pytest.mark.parametrize("size,stride", [(8, 1), (8, 2), (9, 2), (10, 3)])
def test_built_shapes_match_the_real_forward(layer, padding, size, stride):
    args = {"kernel_size": 3, "stride": stride, "padding": padding}
    if layer == "conv":
        args["out_channels"] = 4
    model = build_model({"name": "t", "layers": [{layer: args}]}, (2, size, size + 1))
    out = model(torch.randn(3, 2, size, size + 1))
    assert tuple(out.shape[1:]) == model.output_shape
    if padding == "same":
        assert model.output_shape[1:] == (chapter_same(size, stride), chapter_same(size + 1, stride))
    if padding == "valid":
        assert model.output_shape[1:] == (chapter_valid(size, 3, stride), chapter_valid(size + 1, 3, stride))


def test_same_padding_puts_the_extra_cell_at_the_end():
    # TensorFlow SAME: 8 wide, k=3, s=2 -> output 4, total padding 1, all of it after the input.
    assert same_pad(8, 3, 2) == (0, 1)
    assert same_pad(7, 4, 1) == (1, 2)
    torch.manual_seed(0)
    model = build_model({"name": "t", "layers": [{"conv": {"out_channels": 3, "kernel_size": 3, "stride": 2,
                                                           "padding": "same", "bias": False}}]}, (2, 8, 8))
    x = torch.randn(1, 2, 8, 8)
    weight = model.layers[0].weight
    reference = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), weight, stride=2)
    torch.testing.assert_close(model(x), reference)


def naive_pool(x, k, s, pads, mode):
    """Pooling by explicit loops over windows; padded cells never count (TensorFlow's SAME)."""
    n, c, h, w = x.shape
    oh = (h + sum(pads[0]) - k) // s + 1
    ow = (w + sum(pads[1]) - k) // s + 1
    out = torch.empty(n, c, oh, ow)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - pads[0][0], j * s - pads[1][0]
            win = x[:, :, max(r0, 0):min(r0 + k, h), max(c0, 0):min(c0 + k, w)].flatten(2)
            out[:, :, i, j] = win.amax(2) if mode == "max" else win.mean(2)
    return out


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size,k,s", [(8, 3, 2), (7, 2, 2), (9, 4, 3), (6, 3, 1)])
def test_same_pooling_matches_a_naive_reference(mode, size, k, s):
    x = torch.randn(2, 3, size, size) - 5  # negative values: zero padding would win a max pool
    model = build_model({"name": "t", "layers": [{f"{mode}pool": {"kernel_size": k, "stride": s,
                                                                  "padding": "same"}}]}, (3, size, size))
    pads = (same_pad(size, k, s), same_pad(size, k, s))
    torch.testing.assert_close(model(x), naive_pool(x, k, s, pads, mode))
