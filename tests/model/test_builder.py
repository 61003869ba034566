"""The model builder: shape propagation, LeNet-5's parameter count, and one clear error per user mistake."""
import pytest
import torch
from omegaconf import OmegaConf

from cnnrun import ConfigError, build_model, compose


def spec(*layers, **extra):
    return {"name": "t", "layers": list(layers), **extra}


def test_lenet5_has_61706_parameters():
    cfg = compose([])
    model = build_model(cfg.model, (1, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 61_706
    # per layer, from the formula (k*k*C_in + 1) * C_out and (in + 1) * out
    params = [r.params for r in model.records if r.params]
    assert params == [(25 * 1 + 1) * 6, (25 * 6 + 1) * 16, (400 + 1) * 120, (120 + 1) * 84, (84 + 1) * 10]
    assert model(torch.randn(4, 1, 32, 32)).shape == (4, 10)


def test_interpolations_resolve_from_the_arguments():
    model_cfg = {"name": "t", "channels": 8, "layers": [{"conv": {"out_channels": "${model.channels}",
                                                                   "kernel_size": 3}}, "flatten", {"linear": {"out_features": "${data.num_classes}"}}]}
    model = build_model(model_cfg, (1, 6, 6), num_classes=4)
    assert model.records[0].out_shape == (8, 4, 4)
    assert model.output_shape == (4,)
    # A DictConfig child of a full config resolves against its root.
    root = OmegaConf.create({"model": model_cfg, "data": {"num_classes": 3}})
    assert build_model(root.model, (1, 6, 6)).output_shape == (3,)


@pytest.mark.parametrize("layers,message", [
    (["convv"], r"model.layers\[0\] \(convv\): unknown layer type 'convv'; did you mean 'conv'.*\(known: .*avgpool"),
    ([{"conv": {"out_channels": 4, "kernal_size": 3}}],
     r"model.layers\[0\] \(conv\): unknown argument 'kernal_size'; did you mean 'kernel_size'\?"),
    (["relu", {"conv": {}}], r"model.layers\[1\] \(conv\): missing required argument 'out_channels'"),
    ([{"conv": {"out_channels": 4}, "relu": None}], r"model.layers\[0\]: a layer must be a layer name"),
    ([["relu"]], r"model.layers\[0\]: a layer must be a layer name"),
    ([{"conv": 5}], r"model.layers\[0\] \(conv\): arguments must be a mapping"),
    ([{"dropout": {"p": 2}}], r"model.layers\[0\] \(dropout\): p: must be a probability in \[0, 1\], got 2"),
    ([{"conv": {"out_channels": 4, "kernel_size": 0}}],
     r"model.layers\[0\] \(conv\): kernel_size: must be a positive integer"),
    ([{"conv": {"out_channels": 4, "stride": -2}}], r"model.layers\[0\] \(conv\): stride: must be a positive"),
    ([{"conv": {"out_channels": 0}}], r"model.layers\[0\] \(conv\): out_channels: must be a positive integer"),
    ([{"maxpool": {"kernel_size": 2}}, {"conv": {"out_channels": 4, "kernel_size": 5}}],
     r"model.layers\[1\] \(conv\): conv window 5x5 is larger than its \(padded\) input 4x4: input shape "
     r"\(1, 4, 4\) would give output shape \(4, 0, 0\)"),
    ([{"maxpool": {"kernel_size": 9}}], r"model.layers\[0\] \(maxpool\): maxpool window 9x9 is larger"),
    ([{"linear": {"out_features": 3}}], r"model.layers\[0\] \(linear\): linear expects a flat input, got shape "
                                        r"\(1, 8, 8\); add 'flatten'"),
    (["flatten", {"conv": {"out_channels": 3}}], r"model.layers\[1\] \(conv\): conv expects an input of shape"),
    ([], r"model.layers: must be a non-empty list"),
])
def test_user_mistakes_name_the_layer(layers, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec(*layers), (1, 8, 8))


def test_last_layer_must_match_num_classes():
    with pytest.raises(ConfigError, match=r"model.layers\[1\] \(linear\): the model's output shape is \(7,\) but "
                                          r"data.num_classes is 10"):
        build_model(spec("flatten", {"linear": {"out_features": 7}}), (1, 4, 4), num_classes=10)


def test_unresolvable_interpolation_is_a_config_error():
    with pytest.raises(ConfigError, match="model: cannot resolve"):
        build_model(spec({"conv": {"out_channels": "${model.widht}"}}), (1, 8, 8))


CONV_NET = [{"conv": {"out_channels": 4, "kernel_size": 3}}, "global_avgpool", {"linear": {"out_features": 3}}]


@pytest.mark.parametrize("shape,message", [
    ((1, 40), r"^data\.input_shape: model t takes \[channels, height, width\] images such as \[3, 32, 32\], got "
              r"\[1, 40\]$"),
    ((1, 4, 8, 8), r"^data\.input_shape: model t takes \[channels, height, width\] images"),
    ((1, 9, 12), r"^data\.input_shape: model t needs a spatial size of at least 10x10, got 9x12 \(\[1, 9, 12\]\); its "
                 r"reference input is \[3, 32, 32\]$"),
])
def test_the_declared_input_is_checked_before_building(shape, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec(*CONV_NET, reference_input=[3, 32, 32], min_size=10), shape, 3)
    assert build_model(spec(*CONV_NET, reference_input=[3, 32, 32], min_size=10), (1, 10, 12), 3).output_shape == (3,)


def test_min_size_per_dimension_and_sequences():
    model = spec(*CONV_NET, reference_input=[1, 16, 32, 32], min_size=[4, 8, 8])
    assert build_model(model, (1, 4, 8, 8), 3).output_shape == (3,)
    with pytest.raises(ConfigError, match=r"needs a spatial size of at least 4x8x8, got 3x8x8"):
        build_model(model, (1, 3, 8, 8), 3)
    with pytest.raises(ConfigError, match=r"takes \[channels, length\] sequences such as \[1, 40\], got \[1, 8, 8\]"):
        build_model(spec(*CONV_NET, reference_input=[1, 40]), (1, 8, 8), 3)


@pytest.mark.parametrize("extra,key", [({"reference_input": [3, 0, 32]}, "model.reference_input"),
                                       ({"reference_input": "224"}, "model.reference_input"),
                                       ({"min_size": [4, 4, 4]}, "model.min_size"),
                                       ({"min_size": 0}, "model.min_size")])
def test_bad_declarations_are_config_errors(extra, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        build_model(spec(*CONV_NET, **extra), (1, 8, 8), 3)
