"""spp and sumpool values against naive references written here: loops over the pyramid's bins (SPP-net's window and
stride, and the layer's documented bin edges) and over the windows of a sum."""
import itertools
import math

import pytest
import torch

from cnnrun import build_model
from tests.layers.test_transposed_same import tf_same_pads

REDUCE = {"max": lambda v: v.amax(-1), "avg": lambda v: v.mean(-1)}


def one(layer, args, in_shape):
    return build_model({"name": "t", "layers": [{layer: args}]}, in_shape)


def documented_bin(i, n, size):
    """Bin i of n over ``size`` cells, as the layer documents it: cells floor(i*size/n) .. ceil((i+1)*size/n) - 1."""
    return range(math.floor(i * size / n), math.ceil((i + 1) * size / n))


def paper_bin(i, n, size):
    """SPP-net (He et al. 2015, section 2.3; the chapter's 5.7 table): a window of ceil(a/n) cells moved by a
    stride of floor(a/n)."""
    start = i * math.floor(size / n)
    return range(start, start + math.ceil(size / n))


def naive_spp(x, levels, mode, bin_of):
    """Per level: every bin (one per dimension index) reduced over its cells, in (channel, bin row, bin column) order;
    the levels concatenated."""
    sizes = x.shape[2:]
    parts = []
    for n in levels:
        level = torch.empty(*x.shape[:2], *[n] * len(sizes), dtype=x.dtype)
        for index in itertools.product(range(n), repeat=len(sizes)):
            cells = [bin_of(i, n, size) for i, size in zip(index, sizes)]
            window = x[(slice(None), slice(None), *(slice(c.start, c.stop) for c in cells))]
            level[(slice(None), slice(None), *index)] = REDUCE[mode](window.flatten(2))
        parts.append(level.flatten(1))
    return torch.cat(parts, 1)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("sizes,levels", [((13, 10), [1, 2, 4]), ((3, 3), [4, 2]), ((11,), [1, 3, 4]),
                                          ((5, 4, 3), [1, 2])])
def test_spp_equals_naive_bins(mode, sizes, levels):
    x = torch.randn(2, 3, *sizes)
    model = one("spp", {"levels": levels, "mode": mode}, (3, *sizes))
    assert model.output_shape == (3 * sum(n ** len(sizes) for n in levels),)
    torch.testing.assert_close(model(x), naive_spp(x, levels, mode, documented_bin))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_equals_the_papers_window_and_stride_where_the_levels_divide_the_map(mode):
    x = torch.randn(2, 4, 12, 12)
    levels = [1, 2, 3, 4, 6]
    torch.testing.assert_close(one("spp", {"levels": levels, "mode": mode}, (4, 12, 12))(x),
                               naive_spp(x, levels, mode, paper_bin))


def test_spp_default_mode_is_max():
    x = torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(one("spp", {}, (2, 6, 6))(x), naive_spp(x, [1, 2, 4], "max", documented_bin))


def naive_sum_pool(x, kernel, stride, pads):
    """Sum of each window by loops; pads (before, after) per dimension add zero cells."""
    sizes = x.shape[2:]
    outs = [(n + sum(p) - k) // s + 1 for n, k, s, p in zip(sizes, kernel, stride, pads)]
    out = torch.zeros(*x.shape[:2], *outs, dtype=x.dtype)
    for index in itertools.product(*(range(o) for o in outs)):
        for tap in itertools.product(*(range(k) for k in kernel)):
            cell = [i * s + t - p[0] for i, t, s, p in zip(index, tap, stride, pads)]
            if all(0 <= c < n for c, n in zip(cell, sizes)):
                out[(slice(None), slice(None), *index)] += x[(slice(None), slice(None), *cell)]
    return out


@pytest.mark.parametrize("sizes,args", [
    ((8, 8), {"kernel_size": 2}),  # stride defaults to the kernel
    ((9, 7), {"kernel_size": [2, 3], "stride": [1, 2]}),
    ((9, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((9, 7), {"kernel_size": [3, 2], "stride": 2, "padding": "same"}),
    ((10,), {"kernel_size": 4, "stride": 3, "padding": "same"}),
    ((4, 5, 6), {"kernel_size": 2, "stride": [1, 2, 3], "padding": [1, 0, 1]}),
])
def test_sumpool_equals_naive_window_sums(sizes, args):
    rank = len(sizes)
    per_dim = {k: (v if isinstance(v, list) else [v] * rank) for k, v in args.items() if k != "padding"}
    kernel = per_dim["kernel_size"]
    stride = per_dim.get("stride", kernel)
    padding = args.get("padding", 0)
    if padding == "same":
        pads = [tf_same_pads(n, k, s, 1) for n, k, s in zip(sizes, kernel, stride)]
    else:
        pads = [(p, p) for p in (padding if isinstance(padding, list) else [padding] * rank)]
    x = torch.randn(2, 3, *sizes, dtype=torch.float64)
    model = one("sumpool", args, (3, *sizes)).double()
    expected = naive_sum_pool(x, kernel, stride, pads)
    assert model.output_shape == tuple(expected.shape[1:])
    torch.testing.assert_close(model(x), expected)
    if padding == "same":
        assert expected.shape[2:] == tuple(math.ceil(n / s) for n, s in zip(sizes, stride))

