"""The chapter's semantics, checked against independent references (naive loops, formulas, hand-built modules)."""
import pytest
import torch
import torch.nn.functional as F

from cnnrun import build_model, summarize


def one(layer, args, in_shape, seed=0):
    torch.manual_seed(seed)
    return build_model({"name": "t", "layers": [{layer: args}]}, in_shape)


def naive_local_conv(x, weight, bias, k, stride, out_hw):
    """Loops over output positions; weight[i, j] is the (C_out, C_in*k*k) kernel of position (i, j)."""
    n = x.shape[0]
    out = torch.zeros(n, weight.shape[2], *out_hw)
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k].reshape(n, -1)
            out[:, :, i, j] = patch @ weight[i, j].T + bias[i, j]
    return out


@pytest.mark.parametrize("stride", [1, 2])
def test_local_conv_equals_a_naive_loop_in_output_and_gradients(stride):
    model = one("local_conv", {"out_channels": 4, "kernel_size": 3, "stride": stride}, (2, 9, 8))
    layer = model.layers[0]
    x = torch.randn(3, 2, 9, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    w2 = layer.weight.detach().clone().requires_grad_(True)
    b2 = layer.bias.detach().clone().requires_grad_(True)
    out = model(x)
    ref = naive_local_conv(x2, w2, b2, 3, stride, model.output_shape[1:])
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, w2.grad)
    torch.testing.assert_close(layer.bias.grad, b2.grad)


def test_tiled_local_conv_shares_weights_t_apart_and_tile_1_is_conv():
    model = one("local_conv", {"out_channels": 3, "kernel_size": 3, "tile": [2, 2]}, (2, 8, 8))
    layer = model.layers[0]
    full_w = layer.weight[torch.arange(6) % 2][:, torch.arange(6) % 2]
    full_b = layer.bias[torch.arange(6) % 2][:, torch.arange(6) % 2]
    x = torch.randn(2, 2, 8, 8)
    torch.testing.assert_close(model(x), naive_local_conv(x, full_w, full_b, 3, 1, (6, 6)))

    model = one("local_conv", {"out_channels": 3, "kernel_size": 3, "tile": 1, "padding": "same"}, (2, 8, 8))
    layer = model.layers[0]
    weight = layer.weight[0, 0].view(3, 2, 3, 3)
    torch.testing.assert_close(model(x), F.conv2d(x, weight, layer.bias[0, 0], padding=1))


def test_local_conv_1d_equals_2d_with_height_one():
    m1 = one("local_conv", {"out_channels": 2, "kernel_size": 3}, (3, 10), seed=1)
    x = torch.randn(2, 3, 10)
    w = m1.layers[0].weight  # (1, 8, C_out, C_in*k)
    out = torch.stack([x[:, :, i:i + 3].reshape(2, -1) @ w[0, i].T + m1.layers[0].bias[0, i] for i in range(8)], 2)
    torch.testing.assert_close(m1(x), out)


def test_separable_conv_equals_depthwise_then_pointwise_by_hand():
    model = one("separable_conv", {"out_channels": 5, "kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
                (3, 7, 7))
    sep = model.layers[0]
    x = torch.randn(2, 3, 7, 7)
    mid = F.conv2d(x, sep.depthwise.weight, None, padding=1, groups=3)
    ref = F.conv2d(mid, sep.pointwise.weight, sep.pointwise.bias)
    torch.testing.assert_close(model(x), ref)
    assert sep.depthwise.bias is None and sep.pointwise.bias is not None


def test_naive_inception_module_has_8960_parameters():
    # chapter 5.8: 16 input channels, 16 per branch, no bias: (1*1 + 3*3 + 5*5) * 16 * 16
    model = one("inception", {"ch1x1": 16, "ch3x3": 16, "ch5x5": 16, "bias": False, "activation": "none"},
                (16, 12, 12))
    assert sum(p.numel() for p in model.parameters()) == 8960
    assert model.output_shape == (16 * 4, 12, 12)  # the pooled input passes through: 16 + 16 + 16 + 16
    x = torch.randn(1, 16, 12, 12)
    torch.testing.assert_close(model(x)[:, 48:], F.max_pool2d(x, 3, 1, 1))


def naive_netvlad(x, weight, bias, centroids, clusters, normalize_input):
    """V(j, k) = sum_i a_k(x_i) (x_i(j) - c_k(j)), loops over clusters and positions."""
    n, d = x.shape[:2]
    desc = x.reshape(n, d, -1)
    if normalize_input:
        desc = desc / desc.norm(dim=1, keepdim=True)
    out = []
    for b in range(n):
        logits = weight @ desc[b] + bias[:, None]  # (K+G, P)
        a = torch.exp(logits - logits.max(0).values) / torch.exp(logits - logits.max(0).values).sum(0)
        v = torch.zeros(clusters, d)
        for k in range(clusters):
            for i in range(desc.shape[2]):
                v[k] += a[k, i] * (desc[b, :, i] - centroids[k])
        v = v / v.norm(dim=1, keepdim=True)
        v = v.flatten()
        out.append(v / v.norm())
    return torch.stack(out)


@pytest.mark.parametrize("ghosts", [0, 2])
def test_netvlad_matches_the_formula_has_unit_norm_and_ignores_position_order(ghosts):
    model = one("netvlad", {"clusters": 4, "ghost_clusters": ghosts, "alpha": 1.0}, (6, 3, 5))
    layer = model.layers[0]
    with torch.no_grad():  # random, non-degenerate parameters
        layer.assign.weight.normal_()
        layer.assign.bias.normal_()
        layer.centroids.normal_()
    x = torch.randn(2, 6, 3, 5)
    out = model(x)
    ref = naive_netvlad(x, layer.assign.weight[:, :, 0], layer.assign.bias, layer.centroids, 4, True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    perm = torch.randperm(15)
    shuffled = x.flatten(2)[:, :, perm].view_as(x)
    torch.testing.assert_close(model(shuffled), out, atol=1e-5, rtol=1e-4)


def test_netvlad_kmeans_initialisation_uses_descriptors():
    model = one("netvlad", {"clusters": 2, "init": "kmeans", "normalize_input": False}, (2, 4, 4))
    layer = model.layers[0]
    a = torch.tensor([5.0, 0.0])[None, :, None, None].expand(4, 2, 2, 4)
    b = torch.tensor([0.0, -5.0])[None, :, None, None].expand(4, 2, 2, 4)
    layer.init_from_descriptors(torch.cat([a, b], dim=2))
    centres = torch.tensor(sorted(layer.centroids.tolist()))
    torch.testing.assert_close(centres, torch.tensor([[0.0, -5.0], [5.0, 0.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(layer.assign.weight[:, :, 0], 2 * layer.alpha * layer.centroids)


def test_spp_output_length_does_not_depend_on_the_input_size():
    spec = {"name": "t", "layers": [{"conv": {"out_channels": 4, "kernel_size": 3}}, {"spp": {"levels": [1, 2, 4]}}]}
    m13, m10 = build_model(spec, (3, 13, 13)), build_model(spec, (3, 10, 10))
    assert m13.output_shape == m10.output_shape == (4 * 21,)
    m13.load_state_dict(m10.state_dict())  # the same weights serve both sizes
    assert m13(torch.randn(2, 3, 10, 10)).shape == (2, 84)
    # exact bins on a tiny map: level 4 on a 3x3 map still gives 16 bins per channel
    assert one("spp", {"levels": [4]}, (1, 3, 3))(torch.randn(1, 1, 3, 3)).shape == (1, 16)


def test_transposed_conv_2x2_to_7x7_and_the_checkerboard():
    assert one("transposed_conv", {"out_channels": 1, "kernel_size": 4, "stride": 3}, (1, 2, 2)).output_shape == \
        (1, 7, 7)
    x = torch.ones(1, 1, 6, 6)
    tconv = one("transposed_conv", {"out_channels": 1, "kernel_size": 3, "stride": 2, "bias": False}, (1, 6, 6))
    up = one("upsample_conv", {"out_channels": 1, "kernel_size": 3, "bias": False}, (1, 6, 6))
    with torch.no_grad():
        tconv.layers[0].weight.fill_(1.0)
        up.layers[0][1].weight.fill_(1.0)
    t_inner = tconv(x)[0, 0, 2:-2, 2:-2]
    u_inner = up(x)[0, 0, 1:-1, 1:-1]
    assert torch.unique(u_inner).numel() == 1  # resize-convolution: flat on a constant input
    assert torch.unique(t_inner).numel() > 1  # transposed convolution: uneven overlap, a checkerboard
    assert t_inner[0, 0] != t_inner[0, 1] and t_inner[0, 0] == t_inner[0, 2]


@pytest.mark.parametrize("name,matrix", [
    ("identity", [[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    ("edge_detect", [[1, 0, -1], [0, 0, 0], [-1, 0, 1]]),
    ("edge_detect_center", [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    ("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    ("box_blur", [[1 / 9] * 3] * 3),
    ("gaussian_blur", [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]]),
])
def test_fixed_conv_applies_table_5_3_per_channel(name, matrix):
    model = one("fixed_conv", {"kernel": name}, (3, 9, 9))
    x = torch.randn(1, 3, 9, 9)
    kernel = torch.tensor(matrix, dtype=torch.float32).expand(3, 1, 3, 3)
    torch.testing.assert_close(model(x), F.conv2d(x, kernel, padding=1, groups=3))
    assert not any(p.requires_grad for p in model.parameters())
    if name == "identity":
        torch.testing.assert_close(model(x), x)


def test_sumpool_is_average_times_window():
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(one("sumpool", {"kernel_size": 2}, (3, 8, 8))(x), F.avg_pool2d(x, 2) * 4)


def test_dilated_receptive_field_is_k_plus_k_minus_1_times_d_minus_1():
    for k, d in ((3, 2), (3, 4), (5, 3)):
        s = summarize({"name": "t", "layers": [{"dilated_conv": {"out_channels": 2, "kernel_size": k,
                                                                 "dilation": d, "padding": "same"}}]}, (1, 32, 32))
        assert s["layers"][0]["receptive_field"]["size"] == [k + (k - 1) * (d - 1)] * 2
    # stacked dilations 1, 2, 4 grow the field exponentially: 3, 7, 15
    layers = [{"dilated_conv": {"out_channels": 2, "dilation": d, "padding": "same"}} for d in (1, 2, 4)]
    s = summarize({"name": "t", "layers": layers}, (1, 32, 32))
    assert [r["receptive_field"]["size"][0] for r in s["layers"]] == [3, 7, 15]


def test_blocks_are_indented_in_the_summary_with_config_paths():
    spec = {"name": "t", "layers": [
        {"residual": {"layers": [{"conv": {"out_channels": 4, "padding": "same"}}, "relu"]}},
        {"inception": {"ch1x1": 2, "ch3x3red": 2, "ch3x3": 2, "ch5x5red": 2, "ch5x5": 2, "pool_proj": 2}},
        "global_avgpool"]}
    s = summarize(spec, (3, 8, 8))
    names = [(r["name"], r["depth"]) for r in s["layers"]]
    assert names[:3] == [("model.layers[0]", 0), ("model.layers[0].residual.layers[0]", 1),
                         ("model.layers[0].residual.layers[1]", 1)]
    assert ("model.layers[1].inception.branch4", 1) in names
    # the inception block sees 1 + (5-1) = 5 through its widest branch, after the residual's 3x3: 7
    assert s["layers"][3]["receptive_field"]["size"] == [7, 7]
    assert s["total_params"] == sum(r["params"] for r in s["layers"] if r["depth"] == 0)
