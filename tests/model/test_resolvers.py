"""The width / depth resolvers of model configs: ${cnnrun.ch:...}, ${cnnrun.n:...}, ${cnnrun.max:...}."""
import pytest
from omegaconf import OmegaConf
from torchvision.models._utils import _make_divisible

from cnnrun import ConfigError, build_model
from cnnrun.config import channels, register_resolvers, repeats


@pytest.mark.parametrize("base,width,expected", [(64, 1.0, 64), (64, 0.5, 32), (64, 1.5, 96), (6, 0.25, 2),
                                                 (10, 0.25, 3), (6, 0.01, 1), (192, 2, 384)])
def test_channels_scale_and_round_half_up(base, width, expected):
    assert channels(base, width) == expected


@pytest.mark.parametrize("width", [0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4, 2.0])
@pytest.mark.parametrize("base", [16, 24, 32, 64, 96, 160, 320, 1280])
def test_channels_with_a_divisor_is_mobilenets_make_divisible(base, width):
    assert channels(base, width, 8) == _make_divisible(base * width, 8)


@pytest.mark.parametrize("args,expected", [((2, 1.0), 2), ((2, 1.5), 3), ((2, 0.1), 1), ((10, 0.3), 3),
                                           ((3, 1.0, 1), 2), ((1, 1.0, 1), 0), ((4, 0.5, 1), 1), ((5, 2), 10)])
def test_repeats_are_ceil_of_count_times_depth(args, expected):
    assert repeats(*args) == expected


def test_resolvers_in_a_config():
    register_resolvers()
    cfg = OmegaConf.create({"model": {"width": 0.5, "depth": 2.0,
                                      "a": "${cnnrun.ch:64,${model.width}}", "b": "${cnnrun.n:3,${model.depth},1}",
                                      "c": "${cnnrun.ch:1280,${cnnrun.max:${model.width},1.0},8}"}})
    assert OmegaConf.to_container(cfg.model, resolve=True) == {"width": 0.5, "depth": 2.0, "a": 32, "b": 5, "c": 1280}


@pytest.mark.parametrize("width", [0, -1, "wide"])
def test_a_bad_multiplier_is_a_config_error(width):
    spec = {"name": "t", "width": width, "layers": [{"conv": {"out_channels": "${cnnrun.ch:8,${model.width}}"}}]}
    with pytest.raises(ConfigError, match=r"^model: cannot resolve the model config: .*width must be a positive "
                                          r"number"):
        build_model(spec, (1, 8, 8))
