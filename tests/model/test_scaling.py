"""The model-level size settings (width, depth, divisor) that the builder applies to every channel and repeat count."""
import math

import pytest
from torchvision.models._utils import _make_divisible

from cnnrun import ConfigError, build_model
from cnnrun.model.scaling import channels, repeats


@pytest.mark.parametrize("base,width,expected", [(64, 1.0, 64), (64, 0.5, 32), (64, 1.5, 96), (6, 0.25, 2),
                                                 (10, 0.25, 3), (6, 0.01, 1), (192, 2, 384)])
def test_channels_scale_and_round_half_up(base, width, expected):
    assert channels(base, width) == expected


@pytest.mark.parametrize("width", [0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4, 2.0])
@pytest.mark.parametrize("base", [16, 24, 32, 64, 96, 160, 320, 1280])
def test_channels_with_a_divisor_is_mobilenets_make_divisible(base, width):
    assert channels(base, width, 8) == _make_divisible(base * width, 8)


@pytest.mark.parametrize("args,expected", [((2, 1.0), 2), ((2, 1.5), 3), ((2, 0.1), 1), ((10, 0.3), 3),
                                           ((5, 2), 10), ((0, 3.0), 0)])
def test_repeats_are_ceil_of_count_times_depth(args, expected):
    assert repeats(*args) == expected


def widths_of(net):
    """Output channels / features of every conv and linear layer, in order."""
    return [getattr(m, "out_channels", None) or m.out_features for m in net.modules()
            if hasattr(m, "out_channels") or hasattr(m, "out_features")]


SMALL = {"name": "small", "layers": [
    {"conv": {"out_channels": 12, "kernel_size": 3}}, "relu",
    {"repeat": {"n": 2, "first": [{"conv": {"out_channels": 20, "kernel_size": 3, "stride": 2}}],
                "layers": [{"conv": {"out_channels": 20, "kernel_size": 3, "padding": 1}}]}},
    "global_avgpool", {"linear": {"out_features": 30}}, {"linear": {"out_features": 10}}]}


@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("depth", [0.5, 1.0, 2.0])
def test_width_and_depth_scale_every_count_but_the_output(width, depth):
    net = build_model({**SMALL, "width": width, "depth": depth}, (1, 16, 16), 10)
    copies = max(1, math.ceil(2 * depth))
    w = lambda c: max(1, math.floor(c * width + 0.5))  # noqa: E731
    assert widths_of(net) == [w(12), *[w(20)] * copies, w(30), 10]
    strides = [m.stride for m in net.layers[2].modules() if hasattr(m, "stride") and hasattr(m, "out_channels")]
    assert strides == [(2, 2)] + [(1, 1)] * (copies - 1)  # copy 0 is the stage's strided first block


def test_the_output_width_is_the_last_count_of_the_last_layer_that_has_one():
    nin_like = {"name": "n", "width": 0.5, "layers": [
        {"mlpconv": {"out_channels": [32, 16, 10], "kernel_size": 3}}, "global_avgpool"]}
    assert widths_of(build_model(nin_like, (1, 8, 8), 10)) == [16, 8, 10]


def test_scale_false_keeps_a_layers_numbers_and_up_follows_only_wider_models():
    layers = [{"conv": {"out_channels": 16, "kernel_size": 1, "scale": False}},
              {"conv": {"out_channels": 40, "kernel_size": 1, "scale": "up"}},
              {"repeat": {"n": 2, "scale": False, "layers": [{"conv": {"out_channels": 8, "kernel_size": 1}}]}},
              "flatten", {"linear": {"out_features": 3}}]
    narrow = build_model({"name": "t", "width": 0.5, "depth": 3.0, "divisor": 8, "layers": layers}, (1, 2, 2), 3)
    assert widths_of(narrow) == [16, 40, 8, 8, 3]  # the repeat keeps n=2; its conv is scaled (8 * 0.5 -> 8)
    wide = build_model({"name": "t", "width": 2.0, "divisor": 8, "layers": layers}, (1, 2, 2), 3)
    assert widths_of(wide) == [16, 80, 16, 16, 3]


def test_inception_branch_widths_scale_and_zero_stays_zero():
    spec = {"name": "i", "width": 0.5, "layers": [
        {"inception": {"ch1x1": 16, "ch3x3": 32, "ch5x5": 8, "ch3x3red": 0, "ch5x5red": 4, "pool_proj": 0}},
        "global_avgpool", {"linear": {"out_features": 10}}]}
    net = build_model(spec, (3, 8, 8), 10)
    assert net.output_shape == (10,) and net.records[0].out_shape == (8 + 16 + 4 + 3, 8, 8)


@pytest.mark.parametrize("key,value,path", [("width", 0, "model.width"), ("depth", -1, "model.depth"),
                                            ("width", "wide", "model.width"), ("divisor", 2.5, "model.divisor")])
def test_a_bad_size_setting_is_a_config_error(key, value, path):
    with pytest.raises(ConfigError, match=rf"^{path}: must be a positive"):
        build_model({**SMALL, key: value}, (1, 16, 16), 10)


def test_a_bad_scale_flag_names_the_layer():
    spec = {"name": "t", "layers": [{"conv": {"out_channels": 4, "kernel_size": 1, "scale": "down"}}]}
    with pytest.raises(ConfigError, match=r"^model.layers\[0\] \(conv\).scale: must be true, false or up"):
        build_model(spec, (1, 4, 4))
