"""Every registered layer type builds for each rank it supports, runs forward and backward, reports the right
parameter count (from an independent formula) and rejects bad arguments with a clear error."""
import math

import pytest
import torch

from cnnrun import ConfigError, build_model, layer_types, register
from cnnrun.layers.registry import LAYERS


def conv_params(c_in, c_out, k, rank, bias=True, groups=1):
    return c_out * (c_in // groups) * k ** rank + (c_out if bias else 0)


IMAGE = {1: (3, 16), 2: (3, 12, 10), 3: (3, 6, 8, 8)}
# name -> list of (input shape, args, expected parameter count, expected output shape)
CASES = {
    "conv": [(IMAGE[r], {"out_channels": 5, "kernel_size": 3}, conv_params(3, 5, 3, r),
              (5, *[n - 2 for n in IMAGE[r][1:]])) for r in (1, 2, 3)]
    + [((4, 9, 9), {"out_channels": 6, "kernel_size": 3, "groups": 2, "bias": False, "padding": "same",
                    "stride": 2}, conv_params(4, 6, 3, 2, bias=False, groups=2), (6, 5, 5))],
    "maxpool": [(IMAGE[r], {"kernel_size": 2}, 0, (3, *[n // 2 for n in IMAGE[r][1:]])) for r in (1, 2, 3)]
    + [((3, 13, 13), {"kernel_size": 3, "stride": 2}, 0, (3, 6, 6)),  # overlapping pooling
       ((3, 2, 2), {"kernel_size": 3, "stride": 2, "ceil_mode": True}, 0, (3, 1, 1))],  # ceil_mode: window overhangs
    "avgpool": [(IMAGE[r], {"kernel_size": 2}, 0, (3, *[n // 2 for n in IMAGE[r][1:]])) for r in (1, 2, 3)],
    "global_avgpool": [(IMAGE[r], {}, 0, (3,)) for r in (1, 2, 3)],
    "global_maxpool": [(IMAGE[r], {}, 0, (3,)) for r in (1, 2, 3)],
    "bn": [(IMAGE[r], {}, 6, IMAGE[r]) for r in (1, 2, 3)] + [((7,), {}, 14, (7,))],
    "dropout": [(IMAGE[2], {"p": 0.3}, 0, IMAGE[2]), ((5,), {}, 0, (5,))],
    "flatten": [(IMAGE[r], {}, 0, (math.prod(IMAGE[r]),)) for r in (1, 2, 3)],
    "linear": [((20,), {"out_features": 7}, 20 * 7 + 7, (7,)), ((20,), {"out_features": 7, "bias": False}, 140,
                                                                  (7,))],
    "identity": [(IMAGE[2], {}, 0, IMAGE[2])],
    "leaky_relu": [(IMAGE[2], {"negative_slope": 0.2}, 0, IMAGE[2])],
    "elu": [(IMAGE[2], {"alpha": 0.5}, 0, IMAGE[2])],
}
CASES.update({
    "dilated_conv": [(IMAGE[2], {"out_channels": 4, "kernel_size": 3}, conv_params(3, 4, 3, 2), (4, 8, 6)),
                     (IMAGE[1], {"out_channels": 4, "dilation": 3, "padding": "same"}, conv_params(3, 4, 3, 1),
                      (4, 16))],
    "pointwise_conv": [(IMAGE[r], {"out_channels": 7}, 3 * 7 + 7, (7, *IMAGE[r][1:])) for r in (1, 2, 3)],
    "depthwise_conv": [(IMAGE[r], {"kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
                        6 * 3 ** r + 6, (6, *IMAGE[r][1:])) for r in (1, 2, 3)],
    # depthwise without bias, pointwise with bias: C*k^2*m + C*m*out + out
    "separable_conv": [(IMAGE[2], {"out_channels": 8, "kernel_size": 3}, 3 * 9 + 3 * 8 + 8, (8, 10, 8)),
                       (IMAGE[2], {"out_channels": 8, "depth_multiplier": 2, "bias": False}, 6 * 9 + 6 * 8,
                        (8, 10, 8))],
    "transposed_conv": [((3, 2, 2), {"out_channels": 2, "kernel_size": 4, "stride": 3}, 3 * 2 * 16 + 2, (2, 7, 7)),
                        (IMAGE[1], {"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": "same"},
                         3 * 2 * 3 + 2, (2, 32)),
                        (IMAGE[3], {"out_channels": 2, "kernel_size": 2, "stride": 2}, 3 * 2 * 8 + 2,
                         (2, 12, 16, 16))],
    "upsample_conv": [(IMAGE[2], {"out_channels": 4, "mode": "bilinear"}, conv_params(3, 4, 3, 2), (4, 24, 20)),
                      (IMAGE[1], {"out_channels": 4, "scale_factor": 3}, conv_params(3, 4, 3, 1), (4, 48))],
    "upsample": [(IMAGE[r], {"scale_factor": 2}, 0, (3, *[2 * n for n in IMAGE[r][1:]])) for r in (1, 2, 3)],
    "local_conv": [((3, 32, 32), {"out_channels": 64, "kernel_size": 3}, 1_612_800, (64, 30, 30)),  # Keras' count
                   (IMAGE[1], {"out_channels": 2, "kernel_size": 3, "stride": 2}, 7 * (9 * 2 + 2), (2, 7)),
                   (IMAGE[2], {"out_channels": 2, "kernel_size": 3, "tile": [2, 3]}, 6 * (27 * 2 + 2), (2, 10, 8))],
    "fixed_conv": [(IMAGE[2], {"kernel": "sharpen"}, 27, IMAGE[2]),
                   (IMAGE[2], {"kernel": [[1, 2], [3, 4]], "padding": "valid"}, 12, (3, 11, 9))],
    "sumpool": [(IMAGE[r], {"kernel_size": 2}, 0, (3, *[n // 2 for n in IMAGE[r][1:]])) for r in (1, 2, 3)],
    "spp": [(IMAGE[2], {"levels": [1, 2, 4]}, 0, (3 * 21,)), (IMAGE[1], {"levels": [1, 3], "mode": "avg"}, 0,
                                                              (3 * 4,))],
    "netvlad": [((8, 5, 5), {"clusters": 4}, 8 * 4 + 4 + 4 * 8, (32,)),
                ((8, 6), {"clusters": 3, "ghost_clusters": 2}, 8 * 5 + 5 + 5 * 8, (24,))],
    "inception": [((16, 8, 8), {"ch1x1": 4, "ch3x3red": 3, "ch3x3": 5, "ch5x5red": 2, "ch5x5": 6, "pool_proj": 7},
                   (16 * 4 + 4) + (16 * 3 + 3) + (27 * 5 + 5) + (16 * 2 + 2) + (50 * 6 + 6) + (16 * 7 + 7),
                   (22, 8, 8)),
                  ((16, 8, 8), {"ch1x1": 4, "ch3x3red": 3, "ch3x3": 5, "ch5x5red": 2, "ch5x5": 6, "pool_proj": 7,
                                "bias": False, "norm": "bn", "kernel_5x5": 3},
                   16 * 4 + 16 * 3 + 27 * 5 + 16 * 2 + 18 * 6 + 16 * 7 + 2 * (4 + 3 + 5 + 2 + 6 + 7), (22, 8, 8))],
    "parallel": [(IMAGE[2], {"branches": [[{"conv": {"out_channels": 2, "kernel_size": 1}}],
                                          [{"conv": {"out_channels": 5, "kernel_size": 3, "padding": "same"}}]]},
                  conv_params(3, 2, 1, 2) + conv_params(3, 5, 3, 2), (7, 12, 10)),
                 (IMAGE[2], {"merge": "add", "branches": [["identity"], ["relu"]]}, 0, IMAGE[2])],
    "residual": [(IMAGE[2], {"layers": [{"conv": {"out_channels": 3, "padding": "same"}}], "activation": "relu"},
                  conv_params(3, 3, 3, 2), IMAGE[2]),
                 # odd size: a stride-2 body maps 7 onto 4, and so does the stride-2 1x1 projection
                 ((3, 7, 7), {"layers": [{"conv": {"out_channels": 4, "stride": 2, "padding": 1}}],
                              "shortcut_norm": True}, conv_params(3, 4, 3, 2) + 3 * 4 + 2 * 4, (4, 4, 4)),
                 (IMAGE[2], {"layers": [{"conv": {"out_channels": 6, "stride": 2, "padding": "same"}}],
                             "shortcut_norm": True},
                  conv_params(3, 6, 3, 2) + 3 * 6 + 2 * 6, (6, 6, 5))],
    "repeat": [(IMAGE[2], {"n": 3, "layers": [{"conv": {"out_channels": 4, "padding": "same"}}, "relu"]},
                conv_params(3, 4, 3, 2) + 2 * conv_params(4, 4, 3, 2), (4, 12, 10)),
               (IMAGE[2], {"n": 0, "layers": [{"conv": {"out_channels": 4, "padding": "same"}}]}, 0, IMAGE[2]),
               ((3, 20, 18), {"n": 3, "growth": {"dilation": 2},  # dilations 1, 2, 4: 3x3, 5x5, 9x9 windows
                              "layers": [{"dilated_conv": {"out_channels": 3, "dilation": 1}}]},
                3 * conv_params(3, 3, 3, 2), (3, 20 - 2 - 4 - 8, 18 - 2 - 4 - 8))],
    "mlpconv": [(IMAGE[2], {"out_channels": [8, 6, 4], "kernel_size": 3},
                 conv_params(3, 8, 3, 2) + conv_params(8, 6, 1, 2) + conv_params(6, 4, 1, 2), (4, 10, 8))],
    "layernorm": [(IMAGE[2], {}, 6, IMAGE[2]), ((9,), {}, 18, (9,))],
    "groupnorm": [((6, 4, 4), {"num_groups": 3}, 12, (6, 4, 4))],
    "lrn": [(IMAGE[2], {"size": 3}, 0, IMAGE[2])],
    "dropout2d": [(IMAGE[2], {"p": 0.2}, 0, IMAGE[2])],
    "dropout3d": [(IMAGE[3], {"p": 0.2}, 0, IMAGE[3])],
    "softmax": [((5,), {}, 0, (5,)), (IMAGE[2], {}, 0, IMAGE[2])],
    "adaptive_avgpool": [((3, 12, 10), {"output_size": [3, 2]}, 0, (3, 3, 2)), ((3, 16), {"output_size": 4}, 0, (3, 4)),
                         (IMAGE[3], {"output_size": 2}, 0, (3, 2, 2, 2)),
                         ((3, 2, 2), {"output_size": 6}, 0, (3, 6, 6))],  # larger than the input: cells repeat
    # expand 1x1 (C -> tC) + bn, depthwise k x k + bn, project 1x1 + bn; no biases
    "inverted_residual": [((8, 6, 6), {"out_channels": 8, "expansion": 2},
                           8 * 16 + 2 * 16 + 16 * 9 + 2 * 16 + 16 * 8 + 2 * 8, (8, 6, 6)),
                          ((8, 7, 7), {"out_channels": 12, "stride": 2},
                           8 * 48 + 2 * 48 + 48 * 9 + 2 * 48 + 48 * 12 + 2 * 12, (12, 4, 4)),
                          ((4, 10), {"out_channels": 6, "expansion": 1, "kernel_size": 5},  # no expansion layer
                           4 * 5 + 2 * 4 + 4 * 6 + 2 * 6, (6, 10))],
})
for _act in ("relu", "relu6", "tanh", "sigmoid", "gelu", "silu"):
    CASES[_act] = [(IMAGE[r], {}, 0, IMAGE[r]) for r in (1, 2, 3)] + [((5,), {}, 0, (5,))]

# name -> (input shape, bad args, the argument the error must name)
BAD = {
    "conv": [((3, 8, 8), {"out_channels": 0, "kernel_size": 3}, "out_channels"),
             ((3, 8, 8), {"out_channels": 4, "kernel_size": -1}, "kernel_size"),
             ((3, 8, 8), {"out_channels": 4, "stride": 0}, "stride"),
             ((3, 8, 8), {"out_channels": 4, "padding": "full"}, "padding"),
             ((3, 8, 8), {"out_channels": 4, "groups": 2}, "groups"),
             ((3, 8, 8), {"out_channels": 4, "bias": "yes"}, "bias")],
    "maxpool": [((3, 8, 8), {"kernel_size": 0}, "kernel_size"), ((3, 8, 8), {"kernel_size": 2, "stride": [1]},
                                                                 "stride")],
    "avgpool": [((3, 8, 8), {"kernel_size": [2, 2, 2]}, "kernel_size")],
    "dropout": [((5,), {"p": 1.5}, "p"), ((5,), {"p": -0.1}, "p")],
    "linear": [((5,), {"out_features": 0}, "out_features"), ((5,), {"out_features": 2.5}, "out_features")],
    "bn": [((5,), {"eps": 0}, "eps")],
    "leaky_relu": [((5,), {"negative_slope": -1}, "negative_slope")],
    "elu": [((5,), {"alpha": 0}, "alpha")],
    "dilated_conv": [((3, 8, 8), {"out_channels": 2, "dilation": 0}, "dilation")],
    "pointwise_conv": [((3, 8, 8), {"out_channels": -3}, "out_channels")],
    "depthwise_conv": [((3, 8, 8), {"depth_multiplier": 0}, "depth_multiplier")],
    "separable_conv": [((3, 8, 8), {"out_channels": 4, "kernel_size": [3]}, "kernel_size")],
    "transposed_conv": [((3, 8, 8), {"out_channels": 4, "stride": 2, "output_padding": 2}, "output_padding")],
    "upsample_conv": [((3, 8, 8), {"out_channels": 4, "mode": "cubic"}, "mode")],
    "upsample": [((3, 8, 8), {"scale_factor": 0}, "scale_factor")],
    "local_conv": [((3, 8, 8), {"out_channels": 4, "tile": 0}, "tile")],
    "fixed_conv": [((3, 8, 8), {"kernel": "blur"}, "kernel"), ((3, 8, 8), {"kernel": [[1, 2], [3]]}, "kernel")],
    "sumpool": [((3, 8, 8), {"kernel_size": 0}, "kernel_size")],
    "spp": [((3, 8, 8), {"levels": 4}, "levels"), ((3, 8, 8), {"mode": "sum"}, "mode")],
    "netvlad": [((3, 8, 8), {"clusters": 0}, "clusters"), ((3, 8, 8), {"init": "pca"}, "init")],
    "inception": [((3, 8, 8), {"ch1x1": 2, "ch3x3": 2, "ch5x5": -1}, "ch5x5"),
                  ((3, 8, 8), {"ch1x1": 2, "ch3x3": 2, "ch5x5": 2, "norm": "ln"}, "norm")],
    "parallel": [((3, 8, 8), {"branches": [["relu"]], "merge": "mul"}, "merge"),
                 ((3, 8, 8), {"branches": [["relu"], [{"maxpool": {"kernel_size": 2}}]]}, "branches")],
    "residual": [((3, 8, 8), {"layers": [{"conv": {"out_channels": 4}}], "shortcut": "identity"}, "shortcut"),
                 ((3, 8, 8), {"layers": ["relu"], "activation": "reluu"}, "activation")],
    "repeat": [((3, 8, 8), {"n": -1, "layers": ["relu"]}, "n"),
               ((3, 8, 8), {"n": 2, "layers": ["relu"], "growth": {"dilation": 2}}, "growth"),
               ((3, 8, 8), {"n": 2, "layers": [{"dilated_conv": {"out_channels": 2, "dilation": 1}}],
                            "growth": {"dilation": 0}}, "growth.dilation"),
               ((3, 8, 8), {"n": 0, "layers": [{"conv": {"out_channels": 0}}]}, "[0][0] (conv): out_channels")],
    "mlpconv": [((3, 8, 8), {"out_channels": 16}, "out_channels")],
    "layernorm": [((3, 8, 8), {"eps": -1}, "eps")],
    "groupnorm": [((6, 8, 8), {"num_groups": 4}, "num_groups")],
    "lrn": [((3, 8, 8), {"size": 0}, "size")],
    "dropout2d": [((3, 8, 8), {"p": 3}, "p")],
    "dropout3d": [((3, 4, 8, 8), {"p": -1}, "p")],
    "adaptive_avgpool": [((3, 8, 8), {"output_size": 0}, "output_size"),
                         ((3, 8, 8), {"output_size": [2, 2, 2]}, "output_size")],
    "inverted_residual": [((3, 8, 8), {"out_channels": 4, "expansion": 0}, "expansion"),
                          ((3, 8, 8), {"out_channels": 4, "stride": 0}, "stride"),
                          ((3, 8, 8), {"out_channels": 4, "activation": "relu7"}, "activation"),
                          ((3, 8, 8), {"out_channels": 0}, "out_channels")],
}


def test_every_registered_type_has_cases():
    assert set(layer_types()) == set(CASES), "add a case for each new layer type"


@pytest.mark.parametrize("name,case", [(n, c) for n, cases in CASES.items() for c in cases],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_builds_runs_and_counts_parameters(name, case):
    in_shape, args, params, out_shape = case
    model = build_model({"name": "t", "layers": [{name: args}]}, in_shape)
    assert model.output_shape == out_shape
    assert sum(p.numel() for p in model.parameters()) == params
    model.train()
    x = torch.randn(2, *in_shape, requires_grad=True)
    out = model(x)
    assert tuple(out.shape) == (2, *out_shape)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name,case", [(n, c) for n, cases in BAD.items() for c in cases],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_rejects_bad_arguments_naming_them(name, case):
    in_shape, args, key = case
    with pytest.raises(ConfigError) as info:
        build_model({"name": "t", "layers": [{name: args}]}, in_shape)
    assert str(info.value).startswith(f"model.layers[0] ({name}): {key}: ")


@pytest.mark.parametrize("name,case", [(n, c) for n, cases in CASES.items() for c in cases],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_case_summarizes(name, case):
    from cnnrun import summarize

    in_shape, args, params, out_shape = case
    s = summarize({"name": "t", "layers": [{name: args}]}, in_shape)
    assert s["total_params"] == params and s["layers"][0]["output_shape"] == list(out_shape)
    assert s["layers"][0]["macs"] >= 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_argument_is_named(name):
    with pytest.raises(ConfigError, match=rf"model.layers\[0\] \({name}\): unknown argument 'bogus_arg'"):
        build_model({"name": "t", "layers": [{name: {"bogus_arg": 1}}]}, (3, 8, 8))


def test_user_types_build_and_get_their_default_widths():
    @register("test_scale", doc="multiplies by a constant")
    def scale(in_shape, *, factor=2.0):
        class Scale(torch.nn.Module):
            def forward(self, x):
                return x * factor
        return Scale(), in_shape

    try:
        model = build_model({"name": "t", "layers": [{"test_scale": {"factor": 3.0}}]}, (2, 4))
        torch.testing.assert_close(model(torch.ones(1, 2, 4)), torch.full((1, 2, 4), 3.0))
        assert layer_types()["test_scale"].doc == "multiplies by a constant" and LAYERS.get("test_scale").widths == ()
    finally:
        del LAYERS["test_scale"]
    assert layer_types()["conv"].widths == ("out_channels",) and layer_types()["linear"].widths == ("out_features",)
    with pytest.raises(TypeError, match="takes no argument channels"):
        register("test_wide", widths=("channels",))(lambda in_shape, *, out_channels: None)
    assert "test_wide" not in LAYERS
