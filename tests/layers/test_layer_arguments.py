"""Layer arguments that no other test would catch being ignored, each against torch.nn.functional with the argument
written out, or against the layer's formula computed here."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from cnnrun import build_model
from tests.layers.test_transposed_same import tf_same_pads


def one(layer, args, in_shape, seed=0):
    torch.manual_seed(seed)
    return build_model({"name": "t", "layers": [{layer: args}]}, in_shape)


def same_pad_arg(sizes, kernel, stride, dilation=1):
    """F.pad's argument for TensorFlow's SAME padding of a 2D input."""
    (top, bottom), (left, right) = (tf_same_pads(n, kernel, stride, dilation) for n in sizes)
    return [left, right, top, bottom]


def naive_pool2d(x, kernel, stride, padding, reduce, dilation=1, ceil_mode=False):
    """Pooling by loops over windows: ``reduce(cells, window_size)`` gets the real cells a window covers (padding cells
    are never among them) and its full size k*k. A window must start inside the (left-padded) input (PyTorch's rule
    with ceil_mode)."""
    n, c, h, w = x.shape
    span = dilation * (kernel - 1) + 1

    def count(size):
        steps = (size + 2 * padding - span) / stride
        out = math.ceil(steps) + 1 if ceil_mode else math.floor(steps) + 1
        return out - 1 if (out - 1) * stride >= size + padding else out

    out = torch.empty(n, c, count(h), count(w), dtype=x.dtype)
    for i, j in itertools.product(range(out.shape[2]), range(out.shape[3])):
        rows = [i * stride - padding + a * dilation for a in range(kernel)]
        cols = [j * stride - padding + b * dilation for b in range(kernel)]
        cells = [x[:, :, r, q] for r in rows for q in cols if 0 <= r < h and 0 <= q < w]
        out[:, :, i, j] = reduce(torch.stack(cells, -1), kernel * kernel)
    return out


@pytest.mark.parametrize("include", [True, False])
def test_avgpool_count_include_pad_divides_by_the_window_or_by_its_real_cells(include):
    x = torch.randn(2, 3, 7, 8)
    model = one("avgpool", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": include}, (3, 7, 8))
    divide = (lambda v, k: v.sum(-1) / k) if include else (lambda v, k: v.mean(-1))
    torch.testing.assert_close(model(x), naive_pool2d(x, 3, 2, 1, divide))


@pytest.mark.parametrize("layer,reduce", [("avgpool", lambda v, k: v.mean(-1)), ("maxpool", lambda v, k: v.amax(-1))])
def test_ceil_mode_keeps_the_overhanging_window(layer, reduce):
    x = torch.randn(2, 3, 7, 9)
    model = one(layer, {"kernel_size": 2, "stride": 2, "ceil_mode": True}, (3, 7, 9))
    expected = naive_pool2d(x, 2, 2, 0, reduce, ceil_mode=True)
    assert model.output_shape == (3, 4, 5) == tuple(expected.shape[1:])
    torch.testing.assert_close(model(x), expected)


def test_maxpool_dilation_spreads_the_window():
    x = torch.randn(2, 3, 11, 10)
    model = one("maxpool", {"kernel_size": 3, "stride": 2, "dilation": 2, "padding": 1}, (3, 11, 10))
    torch.testing.assert_close(model(x), naive_pool2d(x, 3, 2, 1, lambda v, k: v.amax(-1), dilation=2))


def test_bn_eps_momentum_and_affine_follow_the_formulas():
    model = one("bn", {"eps": 0.5, "momentum": 0.3}, (3, 4, 4)).train()
    layer = model.layers[0]
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2.0)
        layer.bias.normal_()
    x = torch.randn(8, 3, 4, 4) * 2 + 1
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    expected = (x - mean.view(1, 3, 1, 1)) / torch.sqrt(var.view(1, 3, 1, 1) + 0.5)
    expected = expected * layer.weight.view(1, 3, 1, 1) + layer.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), expected)
    # running statistics start at 0 and 1 and move by momentum towards the batch's (unbiased) statistics
    torch.testing.assert_close(layer.running_mean, 0.3 * mean)
    torch.testing.assert_close(layer.running_var, 0.7 * 1.0 + 0.3 * x.var((0, 2, 3), unbiased=True))
    plain = one("bn", {"affine": False}, (3, 4, 4)).train()
    assert sum(p.numel() for p in plain.parameters()) == 0
    torch.testing.assert_close(plain(x), (x - mean.view(1, 3, 1, 1)) / torch.sqrt(var.view(1, 3, 1, 1) + 1e-5))


@pytest.mark.parametrize("layer,groups", [("groupnorm", 2), ("layernorm", 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_and_layer_norm_normalise_each_group_with_eps(layer, groups, affine):
    args = {"eps": 0.5, "affine": affine, **({"num_groups": groups} if layer == "groupnorm" else {})}
    model = one(layer, args, (64, 3, 2))  # 64 channels: the default of 32 groups would also divide them
    x = torch.randn(2, 64, 3, 2) * 3 + 1
    grouped = x.view(2, groups, -1)
    normal = (grouped - grouped.mean(2, keepdim=True)) / torch.sqrt(grouped.var(2, unbiased=False, keepdim=True) + 0.5)
    expected = normal.view_as(x)
    params = list(model.parameters())
    assert len(params) == (2 if affine else 0)
    if affine:
        scale, shift = model.layers[0].weight, model.layers[0].bias
        with torch.no_grad():
            scale.uniform_(0.5, 2.0)
            shift.normal_()
        expected = expected * scale.view(1, 64, 1, 1) + shift.view(1, 64, 1, 1)
    torch.testing.assert_close(model(x), expected)


def test_layernorm_of_a_flat_input_normalises_its_features_with_eps():
    model = one("layernorm", {"eps": 0.5, "affine": False}, (7,))
    x = torch.randn(3, 7) * 2
    expected = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 0.5)
    torch.testing.assert_close(model(x), expected)


def test_lrn_follows_alexnets_formula():
    """AlexNet (Krizhevsky et al. 2012, section 3.3): b_c = a_c / (k + alpha * sum of a_j^2 over the `size` channels
    j centred on c, clipped at the ends)^beta."""
    size, alpha, beta, k = 3, 0.2, 0.6, 1.5
    model = one("lrn", {"size": size, "alpha": alpha, "beta": beta, "k": k}, (5, 3, 3))
    x = torch.randn(2, 5, 3, 3)
    expected = torch.empty_like(x)
    for c in range(5):
        neighbours = x[:, max(0, c - size // 2):min(5, c + size // 2 + 1)]
        expected[:, c] = x[:, c] / (k + alpha * neighbours.square().sum(1)) ** beta
    torch.testing.assert_close(model(x), expected)


def test_lrn_defaults_are_alexnets():
    model = one("lrn", {}, (7, 2, 2))
    x = torch.randn(1, 7, 2, 2) * 30  # large activations, so that alpha matters
    expected = torch.stack([x[:, c] / (2.0 + 1e-4 * x[:, max(0, c - 2):c + 3].square().sum(1)) ** 0.75
                            for c in range(7)], 1)
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("layer,p", [("dropout", 0.3), ("dropout2d", 0.25), ("dropout3d", 0.4)])
def test_dropout_zeroes_a_fraction_p_and_scales_the_rest(layer, p):
    shape = {"dropout": (100, 40, 25), "dropout2d": (64, 3, 3), "dropout3d": (64, 2, 2, 2)}[layer]
    batch = {"dropout": 1, "dropout2d": 64, "dropout3d": 64}[layer]
    model = one(layer, {"p": p}, shape).train()
    out = model(torch.ones(batch, *shape))
    units = out.flatten(2) if layer != "dropout" else out.flatten()[:, None]  # dropped units: maps or elements
    kept = units != 0
    assert torch.equal(kept.all(-1), kept.any(-1))  # a unit is dropped whole
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - p)))
    dropped = 1 - kept.all(-1).float().mean()
    # 100,000 elements or 4,096 maps: the binomial standard deviation is < 0.008, so 0.04 is over 5 of them
    assert abs(float(dropped) - p) < 0.04
    assert torch.equal(model.eval()(torch.ones(batch, *shape)), torch.ones(batch, *shape))


def test_elu_alpha_and_leaky_relu_slope():
    x = torch.linspace(-4, 4, 81).view(1, 1, 81)
    torch.testing.assert_close(one("elu", {"alpha": 0.5}, (1, 81))(x), torch.where(x > 0, x, 0.5 * (x.exp() - 1)))
    torch.testing.assert_close(one("leaky_relu", {"negative_slope": 0.2}, (1, 81))(x), torch.where(x > 0, x, 0.2 * x))


def conv_weights(model):
    return [(m.weight, m.bias) for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]


CONV_CASES = {
    "conv_padding_reflect": ("conv", {"out_channels": 4, "kernel_size": 3, "padding": 2, "padding_mode": "reflect"},
                             lambda x, w: F.conv2d(F.pad(x, [2] * 4, mode="reflect"), *w[0])),
    "conv_padding_replicate": ("conv", {"out_channels": 4, "padding": 1, "padding_mode": "replicate"},
                               lambda x, w: F.conv2d(F.pad(x, [1] * 4, mode="replicate"), *w[0])),
    "conv_padding_circular": ("conv", {"out_channels": 4, "padding": 1, "padding_mode": "circular"},
                              lambda x, w: F.conv2d(F.pad(x, [1] * 4, mode="circular"), *w[0])),
    "conv_per_dimension": ("conv", {"out_channels": 6, "kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0],
                                    "dilation": [1, 2], "groups": 3},
                           lambda x, w: F.conv2d(x, *w[0], stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=3)),
    "dilated_conv": ("dilated_conv", {"out_channels": 2, "dilation": 3, "stride": 2, "bias": False},
                     lambda x, w: F.conv2d(x, w[0][0], stride=2, dilation=3)),
    "pointwise_conv": ("pointwise_conv", {"out_channels": 6, "stride": 2, "groups": 3, "bias": False},
                       lambda x, w: F.conv2d(x, w[0][0], stride=2, groups=3)),
    "depthwise_conv": ("depthwise_conv", {"kernel_size": 2, "depth_multiplier": 2, "stride": 2, "dilation": 2,
                                          "padding": 2, "bias": False},
                       lambda x, w: F.conv2d(x, w[0][0], stride=2, padding=2, dilation=2, groups=3)),
    "separable_conv": ("separable_conv", {"out_channels": 4, "kernel_size": 2, "stride": 2, "dilation": 2,
                                          "padding": "same"},
                       lambda x, w: F.conv2d(F.conv2d(F.pad(x, same_pad_arg((11, 10), 2, 2, 2)), w[0][0], stride=2,
                                                      dilation=2, groups=3), *w[1])),
    "fixed_conv_stride": ("fixed_conv", {"kernel": "sharpen", "stride": 2},
                          lambda x, w: F.conv2d(F.pad(x, same_pad_arg((11, 10), 3, 2)),
                                                torch.tensor([[0., -1, 0], [-1, 5, -1], [0, -1, 0]]).expand(3, 1, 3, 3),
                                                stride=2, groups=3)),
    "upsample_conv": ("upsample_conv", {"out_channels": 2, "mode": "bilinear", "scale_factor": 2, "kernel_size": 5,
                                        "padding": "valid"},
                      lambda x, w: F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                                            *w[0])),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution_arguments_equal_functional_conv(case):
    layer, args, reference = CONV_CASES[case]
    model = one(layer, args, (3, 11, 10))
    x = torch.randn(2, 3, 11, 10)
    expected = reference(x, conv_weights(model))
    assert model.output_shape == tuple(expected.shape[1:])
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("rank,mode", [(1, "linear"), (2, "bilinear"), (2, "bicubic"), (3, "trilinear")])
def test_upsample_mode_equals_interpolate(rank, mode):
    shape = (2, *[5, 4, 3][:rank])
    x = torch.randn(2, *shape)
    model = one("upsample", {"scale_factor": 3, "mode": mode}, shape)
    torch.testing.assert_close(model(x), F.interpolate(x, scale_factor=3, mode=mode, align_corners=False))


def naive_local_conv(x, weight, bias, kernel, stride, dilation, out_hw):
    """Loops over output positions, each with its own (C_out, C_in*k*k) kernel; the patch's cells are d apart."""
    out = torch.zeros(x.shape[0], weight.shape[2], *out_hw)
    for i, j in itertools.product(range(out_hw[0]), range(out_hw[1])):
        patch = x[:, :, i * stride:i * stride + dilation * (kernel - 1) + 1:dilation,
                  j * stride:j * stride + dilation * (kernel - 1) + 1:dilation]
        out[:, :, i, j] = patch.reshape(x.shape[0], -1) @ weight[i, j].T + bias[i, j]
    return out


@pytest.mark.parametrize("bias", [True, False])
def test_local_conv_kernel_dilation_and_bias(bias):
    model = one("local_conv", {"out_channels": 2, "kernel_size": 2, "dilation": 3, "stride": 2, "bias": bias},
                (3, 11, 10))
    layer = model.layers[0]
    x = torch.randn(2, 3, 11, 10)
    assert (layer.bias is not None) == bias
    offsets = layer.bias.detach() if bias else torch.zeros(*layer.weight.shape[:3])
    # the dilated 2-cell window spans 4 cells: (11 - 4) // 2 + 1 = (10 - 4) // 2 + 1 = 4 positions
    expected = naive_local_conv(x, layer.weight.detach(), offsets, 2, 2, 3, (4, 4))
    assert model.output_shape == (2, 4, 4)
    torch.testing.assert_close(model(x), expected)


def test_inception_pool_kernel_and_kernel_3x3():
    model = one("inception", {"ch1x1": 1, "ch3x3": 2, "ch5x5": 1, "kernel_3x3": 5, "pool_kernel": 5,
                              "activation": "none", "bias": False}, (2, 9, 8))
    block = model.layers[0]
    x = torch.randn(1, 2, 9, 8)
    out = model(x)
    # the pooled input passes through (pool_proj: 0), pooled by a 5x5 SAME max pool
    padded = F.pad(x, same_pad_arg((9, 8), 5, 1), value=float("-inf"))
    torch.testing.assert_close(out[:, 4:], F.max_pool2d(padded, 5, stride=1))
    (weight, _), = conv_weights(block.branch2)
    assert weight.shape == (2, 2, 5, 5)
    torch.testing.assert_close(out[:, 1:3], F.conv2d(x, weight, padding=2))


def test_inception_bn_eps():
    model = one("inception", {"ch1x1": 2, "ch3x3": 1, "ch5x5": 1, "norm": "bn", "bn_eps": 0.5, "activation": "none",
                              "bias": False}, (2, 5, 5)).eval()  # running statistics 0 and 1
    (weight, _), = conv_weights(model.layers[0].branch1)
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(model(x)[:, :2], F.conv2d(x, weight) / math.sqrt(1 + 0.5))


def test_inverted_residual_activation_and_bn_eps():
    model = one("inverted_residual", {"out_channels": 6, "expansion": 1, "activation": "relu", "bn_eps": 0.5},
                (4, 6, 6)).eval()  # running statistics 0 and 1: batch norm divides by sqrt(1 + eps)
    (dw, _), (pw, _) = conv_weights(model)
    x = torch.randn(2, 4, 6, 6) * 20  # large values: relu6 would cap them
    hidden = F.relu(F.conv2d(x, dw, padding=1, groups=4) / math.sqrt(1.5))
    expected = F.conv2d(hidden, pw) / math.sqrt(1.5)
    assert hidden.max() > 6
    torch.testing.assert_close(model(x), expected)


def batch_normalized(h, eps=1e-5):
    """Training-mode batch norm with its initial scale 1 and shift 0: each channel standardised over the batch."""
    mean = h.mean((0, 2, 3), keepdim=True)
    return (h - mean) / torch.sqrt(h.var((0, 2, 3), unbiased=False, keepdim=True) + eps)


def test_mlpconv_kernel_stride_padding_activation_and_norm():
    model = one("mlpconv", {"out_channels": [4, 3], "kernel_size": 2, "stride": 2, "padding": 1,
                            "activation": "tanh", "norm": "bn"}, (2, 7, 7)).train()
    (w0, b0), (w1, b1) = conv_weights(model)
    assert w0.shape == (4, 2, 2, 2) and w1.shape == (3, 4, 1, 1)
    x = torch.randn(4, 2, 7, 7) * 3 + 2
    hidden = torch.tanh(batch_normalized(F.conv2d(x, w0, b0, stride=2, padding=1)))
    expected = torch.tanh(batch_normalized(F.conv2d(hidden, w1, b1)))
    torch.testing.assert_close(model(x), expected)


def test_residual_activation_applies_after_the_sum():
    model = one("residual", {"layers": [{"conv": {"out_channels": 3, "padding": "same"}}], "activation": "tanh"},
                (3, 5, 5))
    (weight, bias), = conv_weights(model)
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(model(x), torch.tanh(F.conv2d(x, weight, bias, padding=1) + x))


def test_residual_shortcut_conv_projects_even_when_the_shape_is_kept():
    model = one("residual", {"layers": [{"conv": {"out_channels": 3, "padding": "same"}}], "shortcut": "conv"},
                (3, 5, 5))
    (weight, bias), (projection, projection_bias) = conv_weights(model)
    assert projection.shape == (3, 3, 1, 1)
    x = torch.randn(2, 3, 5, 5)
    expected = F.conv2d(x, weight, bias, padding=1) + F.conv2d(x, projection, projection_bias)
    torch.testing.assert_close(model(x), expected)


def test_netvlad_alpha_sets_the_assignment_from_the_centres():
    """The paper's initialisation: w_k = 2 alpha c_k, b_k = -alpha ||c_k||^2."""
    layer = one("netvlad", {"clusters": 3, "alpha": 7.0}, (4, 2, 2)).layers[0]
    c = layer.centroids.detach()
    torch.testing.assert_close(layer.assign.weight[:, :, 0], 14.0 * c)
    torch.testing.assert_close(layer.assign.bias, -7.0 * c.square().sum(1))
