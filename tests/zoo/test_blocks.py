"""The layer types the zoo added, against independent implementations: the inverted residual against torchvision's
MobileNetV2 block, repeat's growth and n: 0, the residual projection on odd sizes, ceil-mode pooling."""
import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

from cnnrun import build_model


def one_layer(name, args, shape):
    return build_model({"name": "t", "layers": [{name: args}]}, shape)


@pytest.mark.parametrize("inp,oup,stride,t,size", [(16, 16, 1, 6, 9), (16, 24, 2, 6, 8), (32, 32, 1, 1, 5),
                                                   (24, 40, 2, 4, 7)])
def test_inverted_residual_equals_torchvisions_block(inp, oup, stride, t, size):
    torch.manual_seed(0)
    theirs = InvertedResidual(inp, oup, stride, t)
    ours = one_layer("inverted_residual", {"out_channels": oup, "stride": stride, "expansion": t}, (inp, size, size))
    assert ours.layers[0].use_shortcut == theirs.use_res_connect
    tensors = list(theirs.state_dict().values())
    ours.load_state_dict(dict(zip(ours.state_dict(), tensors)))  # the same tensors in the same order
    x = torch.randn(3, inp, size, size)
    for mode in (True, False):  # batch statistics, then running statistics
        ours.train(mode), theirs.train(mode)
        torch.testing.assert_close(ours(x), theirs(x))


def test_repeat_growth_multiplies_the_dilation_of_each_copy():
    model = one_layer("repeat", {"n": 4, "growth": {"dilation": 2}, "layers": [
        {"dilated_conv": {"out_channels": 2, "dilation": 1, "padding": "same"}}, "relu"]}, (1, 20, 20))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.dilation for m in convs] == [(1, 1), (2, 2), (4, 4), (8, 8)]
    x = torch.randn(1, 1, 20, 20)
    expected = x
    for conv in convs:
        expected = torch.relu(nn.functional.conv2d(expected, conv.weight, conv.bias, padding=conv.dilation,
                                                   dilation=conv.dilation))
    torch.testing.assert_close(model(x), expected)


def test_repeat_zero_times_is_the_identity_and_still_checks_its_layers():
    model = one_layer("repeat", {"n": 0, "layers": [{"conv": {"out_channels": 4}}]}, (2, 6, 6))
    x = torch.randn(2, 2, 6, 6)
    assert torch.equal(model(x), x) and sum(p.numel() for p in model.parameters()) == 0


def test_residual_projection_on_an_odd_size_matches_the_strided_body():
    model = one_layer("residual", {"layers": [{"conv": {"out_channels": 4, "stride": 2, "padding": 1}}],
                                   "shortcut_norm": True}, (3, 7, 7))
    block = model.layers[0]
    x = torch.randn(2, 3, 7, 7)
    shortcut = nn.functional.conv2d(x, block.shortcut.conv.weight, stride=2)  # 1x1, stride 2: positions 0, 2, 4, 6
    expected = block.body(x) + block.shortcut.bn(shortcut)
    torch.testing.assert_close(model(x), expected)


def test_adaptive_avgpool_averages_the_cells_of_each_bin():
    model = one_layer("adaptive_avgpool", {"output_size": [2, 3]}, (1, 4, 6))
    x = torch.arange(24.0).view(1, 1, 4, 6)
    expected = x.view(1, 1, 2, 2, 3, 2).mean((3, 5))
    torch.testing.assert_close(model(x), expected)
