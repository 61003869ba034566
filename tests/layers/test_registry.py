"""Every registered layer type builds for each rank it supports, runs forward and backward, reports the right
parameter count (from an independent formula) and rejects bad arguments with a clear error."""
import math

import pytest
import torch

from cnnrun import ConfigError, build_model, layer_types, register
from cnnrun.layers.registry import _REGISTRY


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
    + [((3, 13, 13), {"kernel_size": 3, "stride": 2}, 0, (3, 6, 6))],  # overlapping pooling
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
for _act in ("relu", "tanh", "sigmoid", "gelu", "silu"):
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_argument_is_named(name):
    with pytest.raises(ConfigError, match=rf"model.layers\[0\] \({name}\): unknown argument 'bogus_arg'"):
        build_model({"name": "t", "layers": [{name: {"bogus_arg": 1}}]}, (3, 8, 8))


def test_register_rejects_duplicates_and_user_types_build():
    with pytest.raises(ValueError, match="already registered"):
        register("conv")(lambda in_shape: None)

    @register("test_scale", doc="multiplies by a constant")
    def scale(in_shape, *, factor=2.0):
        class Scale(torch.nn.Module):
            def forward(self, x):
                return x * factor
        return Scale(), in_shape

    try:
        model = build_model({"name": "t", "layers": [{"test_scale": {"factor": 3.0}}]}, (2, 4))
        torch.testing.assert_close(model(torch.ones(1, 2, 4)), torch.full((1, 2, 4), 3.0))
    finally:
        del _REGISTRY["test_scale"]
