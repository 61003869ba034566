"""summarize(): parameters, MACs and receptive fields against hand-computed values (chapter 5.10, 5.19)."""
import json

from cnnrun import compose, summarize


def test_lenet5_summary_counts():
    s = summarize(compose([]).model, (1, 32, 32), 10)
    assert s["total_params"] == s["trainable_params"] == 61_706
    # MACs: output positions x kernel volume x input channels, and in x out for linear layers
    expected = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 25 * 6 + 400 * 120 + 120 * 84 + 84 * 10
    assert s["macs"] == expected
    assert [r["output_shape"] for r in s["layers"]][:3] == [[6, 28, 28], [6, 28, 28], [6, 14, 14]]
    json.dumps(s)  # plain data


def test_macs_of_convolutions_are_torchs_flop_count_halved():
    """torch's FLOP counter (2 FLOPs per multiply-accumulate) as the reference: plain, strided, grouped, dilated and
    transposed convolutions, whose every input position meets the whole kernel once (stride 2: a quarter of the
    output's positions)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cnnrun import build_model

    layers = [{"conv": {"out_channels": 8, "kernel_size": 3, "stride": 2}}, "relu",
              {"conv": {"out_channels": 8, "kernel_size": 3, "groups": 4, "dilation": 2}},
              {"transposed_conv": {"out_channels": 6, "kernel_size": 4, "stride": 2}},
              {"transposed_conv": {"out_channels": 4, "kernel_size": 3, "stride": 3, "groups": 2}}]
    spec = {"name": "t", "layers": layers}
    net = build_model(spec, (3, 21, 21))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, 3, 21, 21))
    per_layer = summarize(spec, (3, 21, 21))["layers"]
    transposed = [r["macs"] for r in per_layer if r["type"] == "transposed_conv"]
    assert transposed and all(transposed)
    assert sum(r["macs"] for r in per_layer) * 2 == counter.get_total_flops()


def test_stacked_3x3_convolutions_see_5x5_then_7x7():
    layers = [{"conv": {"out_channels": 4, "kernel_size": 3, "padding": "same"}}, "relu"] * 3
    s = summarize({"name": "t", "layers": layers}, (1, 16, 16))
    rfs = [r["receptive_field"]["size"] for r in s["layers"] if r["type"] == "conv"]
    assert rfs == [[3, 3], [5, 5], [7, 7]]
    # a stride-2 pool doubles the step: the next 3x3 adds 2 * 2 = 4
    s = summarize({"name": "t", "layers": [{"conv": {"out_channels": 2, "kernel_size": 3}},
                                            {"maxpool": {"kernel_size": 2}},
                                            {"conv": {"out_channels": 2, "kernel_size": 3}}]}, (1, 16, 16))
    assert [r["receptive_field"] for r in s["layers"]] == [
        {"size": [3, 3], "stride": [1, 1]}, {"size": [4, 4], "stride": [2, 2]}, {"size": [8, 8], "stride": [2, 2]}]
