"""What each zoo architecture is for, against its paper: DeepFace's layer shapes, MobileNet's parameter and MAC
counts, the dilated context network's exponential receptive field, SPP-net's several input sizes, NetVLAD's K*D
vector, 1D and 3D convolutions, and the width / depth multipliers."""
import pytest
import torch
from torch import nn

from cnnrun import build_model, summarize
from cnnrun.model.zoo import zoo_names
from tests.zoo.helpers import meta_model, zoo_spec


def test_deepface_shapes_follow_the_paper_at_152x152():
    """Taigman et al. 2014, Fig. 2: C1 142x142x32, M2 71x71x32, C3 63x63x16, L4 55x55x16, L5 25x25x16, L6 21x21x16,
    F7 4096, F8 4030 (chapter 5.21)."""
    model = meta_model("deepface", (3, 152, 152), 4030)
    top = [(r.type, r.out_shape, r.params) for r in model.records if r.depth == 0 and r.type not in ("relu", "dropout")]
    shapes = [(t, s) for t, s, _ in top]
    assert shapes == [("conv", (32, 142, 142)), ("maxpool", (32, 71, 71)), ("conv", (16, 63, 63)),
                      ("local_conv", (16, 55, 55)), ("local_conv", (16, 25, 25)), ("local_conv", (16, 21, 21)),
                      ("flatten", (16 * 21 * 21,)), ("linear", (4096,)), ("linear", (4030,))]
    # unshared weights: a k x k x C_in x C_out kernel and a bias per output position
    params = [p for t, _, p in top if p]
    assert params == [(11 * 11 * 3 + 1) * 32, (9 * 9 * 32 + 1) * 16, 55 * 55 * (9 * 9 * 16 * 16 + 16),
                      25 * 25 * (7 * 7 * 16 * 16 + 16), 21 * 21 * (5 * 5 * 16 * 16 + 16), (7056 + 1) * 4096,
                      (4096 + 1) * 4030]
    assert sum(params) > 118_000_000  # "more than 120 million parameters" in the paper, with its other details


def test_deepface_runs_at_its_smallest_input():
    model = build_model(zoo_spec("deepface"), (3, 72, 72), 10)
    assert model(torch.randn(2, 3, 72, 72)).shape == (2, 10)


def mobilenet_v1_reference(classes=1000):
    """Parameters and multiply-accumulates of MobileNet (Howard et al. 2017, Table 1) at 224x224, by hand."""
    blocks = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
              *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1)]
    size = 112
    params, macs = 3 * 3 * 3 * 32 + 2 * 32, 3 * 3 * 3 * 32 * size * size
    for cin, cout, stride in blocks:
        size //= stride
        params += cin * 9 + 2 * cin + cin * cout + 2 * cout  # depthwise + bn, pointwise + bn (no biases)
        macs += size * size * (cin * 9 + cin * cout)
    return params + 1024 * classes + classes, macs + 1024 * classes


def test_mobilenet_v1_has_the_papers_parameters_and_mult_adds():
    params, macs = mobilenet_v1_reference()
    with torch.device("meta"):
        s = summarize(zoo_spec("mobilenet"), (3, 224, 224), 1000)
    assert (s["total_params"], s["macs"]) == (params, macs)
    assert round(s["total_params"] / 1e6, 1) == 4.2 and round(s["macs"] / 1e6) == 569  # the paper's Table 1


@pytest.mark.parametrize("depth,layers,k", [(0.4, 2, 3), (1.0, 5, 3), (1.4, 7, 3), (0.6, 3, 5)])
def test_dilated_context_network_receptive_field_grows_exponentially(depth, layers, k):
    """3x3 stem, L layers of dilation 2^0 .. 2^(L-1), a last 3x3: 1 + (k-1)(1 + (2^L - 1) + 1) (Yu & Koltun: 67x67
    for the basic context module, L = 5)."""
    with torch.device("meta"):
        s = summarize(zoo_spec("dilated", depth=depth, kernel_size=k), (3, 32, 32), 10)
    assert sum(r["type"] == "dilated_conv" for r in s["layers"]) == layers
    last_conv = [r for r in s["layers"] if r["depth"] == 0 and r["type"] == "conv"][-1]
    assert last_conv["receptive_field"]["size"] == [1 + (k - 1) * (2 ** layers + 1)] * 2
    assert last_conv["output_shape"][1:] == [32, 32]  # the resolution is kept
    if (layers, k) == (5, 3):
        assert last_conv["receptive_field"]["size"] == [67, 67]


def test_dilated_layers_double_their_dilation():
    model = build_model(zoo_spec("dilated"), (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.dilation[0] for m in convs] == [1, 1, 2, 4, 8, 16, 1, 1]


def test_sppnet_one_model_trains_and_predicts_at_several_input_sizes():
    torch.manual_seed(0)
    model = build_model(zoo_spec("sppnet"), (3, 32, 32), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for size in ((32, 32), (48, 48), (40, 56)):
        model.train()
        loss = nn.functional.cross_entropy(model(torch.randn(4, 3, *size)), torch.arange(4))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        model.eval()
        assert model(torch.randn(2, 3, *size)).shape == (2, 10)


def test_netvlad_pools_to_clusters_times_descriptor_channels():
    for clusters, width in ((16, 1.0), (8, 0.5)):
        model = meta_model("netvlad", (3, 32, 32), 10, clusters=clusters, width=width)
        vlad = next(r for r in model.records if r.type == "netvlad")
        assert vlad.in_shape == (int(128 * width), 8, 8) and vlad.out_shape == (clusters * int(128 * width),)


def test_cnn1d_takes_mnist1d_sequences_with_1d_convolutions():
    model = build_model(zoo_spec("cnn1d"), (1, 40), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert convs and all(isinstance(m, nn.Conv1d) for m in convs)
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)


@pytest.mark.parametrize("shape", [(1, 16, 32, 32), (3, 16, 112, 112)])
def test_c3d_takes_video_clips_with_3d_convolutions(shape):
    model = meta_model("c3d", shape)
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert convs and all(isinstance(m, nn.Conv3d) and m.kernel_size == (3, 3, 3) for m in convs)
    first_pool = next(r for r in model.records if r.type == "maxpool")
    assert first_pool.out_shape[1] == shape[1]  # the first pooling keeps the time axis (1x2x2)
    assert model.output_shape == (10,)
    if shape == (1, 16, 32, 32):  # and it runs, at full width
        out = build_model(zoo_spec("c3d"), shape, 10).eval()(torch.randn(2, *shape))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_googlenet_has_nine_inception_modules_ending_in_1024_channels_at_7x7():
    model = meta_model("googlenet", (3, 224, 224), 1000)
    inception = [r for r in model.records if r.type == "inception"]
    assert len(inception) == 9 and inception[-1].out_shape == (1024, 7, 7)


def widths(model):
    return [r.out_shape[0] for r in model.records if r.depth == 0 and r.params]


@pytest.mark.parametrize("name", zoo_names())
def test_width_multiplier_scales_the_layers(name):
    """model.width (a multiplier, 1.0 by default) narrows every layer; the classifier keeps the class count."""
    ref = zoo_spec(name)["reference_input"]
    shape = ref if len(ref) != 3 else [ref[0], *[max(32, s) for s in ref[1:]]]
    full, half = meta_model(name, shape), meta_model(name, shape, 10, width=0.5)
    assert half.output_shape == full.output_shape == (10,)
    assert all(h <= f for h, f in zip(widths(half), widths(full))) and widths(half) != widths(full)
    assert sum(p.numel() for p in half.parameters()) < sum(p.numel() for p in full.parameters())


def count_type(model, layer_type):
    return sum(r.type == layer_type for r in model.records)


@pytest.mark.parametrize("name,block,per_depth", [
    ("resnet18", "residual", {0.5: 4, 1.0: 8, 2.0: 16}),
    ("vgg16", "conv", {0.5: 8, 1.0: 13, 2.0: 26}),  # ceil(n * depth) per stage: 1+1+2+2+2, 2+2+3+3+3, ...
    ("mobilenet_v2", "inverted_residual", {0.5: 11, 1.0: 17, 2.0: 34}),
    ("mobilenet", "pointwise_conv", {0.4: 10, 1.0: 13, 2.0: 18}),
    ("xception", "residual", {0.5: 5, 1.0: 7, 2.0: 11}),
    ("cnn1d", "conv", {0.5: 3, 1.0: 4, 2.0: 6}),
    ("c3d", "conv", {0.5: 3, 1.0: 4, 2.0: 6}),
])
def test_depth_multiplier_scales_the_repeated_blocks(name, block, per_depth):
    shape = zoo_spec(name)["reference_input"]
    for depth, expected in per_depth.items():
        model = meta_model(name, shape, 10, depth=depth)
        assert count_type(model, block) == expected, depth


def test_every_multiplier_of_a_model_is_a_number_with_default_one():
    for name in zoo_names():
        model = zoo_spec(name)
        for key in ("width", "depth"):
            if key in model:
                assert model[key] == 1.0 and isinstance(model[key], float), (name, key)
