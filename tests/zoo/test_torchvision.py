"""The ImageNet zoo models against torchvision, built at test time with weights=None (nothing is downloaded):
parameter counts and MACs equal torchvision's (and its published metadata), and torchvision's weights, loaded through
the documented name mapping, give torchvision's outputs."""
import pytest
import torch
import torchvision

from cnnrun import ConfigError, build_model, compose, summarize
from cnnrun.model.torchvision_weights import ARCHS, key_mapping, load_torchvision_weights
from tests.conftest import REPO, run_cli
from tests.zoo.helpers import zoo_spec

WEIGHTS = {"alexnet": "AlexNet_Weights", "vgg11": "VGG11_Weights", "vgg16": "VGG16_Weights",
           "resnet18": "ResNet18_Weights", "mobilenet_v2": "MobileNet_V2_Weights", "googlenet": "GoogLeNet_Weights"}
PARAMS = {"alexnet": 61_100_840, "vgg11": 132_863_336, "vgg16": 138_357_544, "resnet18": 11_689_512,
          "mobilenet_v2": 3_504_872, "googlenet": 6_624_904}


def imagenet(name, size=224, *overrides):
    return compose([f"model={name}", "data=synthetic", f"data.input_shape=[3,{size},{size}]", "data.num_classes=1000",
                    *overrides])


def torchvision_model(arch, **kwargs):
    return getattr(torchvision.models, arch)(weights=None, **ARCHS[arch], **kwargs)


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", sorted(PARAMS))
def test_parameters_equal_torchvision_tensor_by_tensor(arch):
    with torch.device("meta"):  # shapes only
        ours = build_model(zoo_spec(arch), (3, 224, 224), 1000)
        theirs = torchvision_model(arch)
    assert count(ours) == count(theirs) == PARAMS[arch]
    # the same tensors in the same order: the premise of the weight mapping
    assert [tuple(t.shape) for t in ours.state_dict().values()] == \
        [tuple(t.shape) for t in theirs.state_dict().values()]


@pytest.mark.parametrize("arch", sorted(PARAMS))
def test_macs_equal_torchvisions_published_operation_count(arch):
    meta = getattr(torchvision.models, WEIGHTS[arch]).IMAGENET1K_V1.meta  # offline metadata: GFLOPs (really GMACs)
    with torch.device("meta"):
        summary = summarize(zoo_spec(arch), (3, 224, 224), 1000)
    assert summary["total_params"] == meta["num_params"]
    assert round(summary["macs"] / 1e9, 3) == meta["_ops"]


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.4])
def test_mobilenet_v2_width_multiplier_matches_torchvision(width):
    """Channels rounded to multiples of 8 (make_divisible), the last layer kept at 1280 below width 1."""
    with torch.device("meta"):
        ours = build_model(zoo_spec("mobilenet_v2", width=width), (3, 224, 224), 1000)
        theirs = torchvision.models.mobilenet_v2(weights=None, width_mult=width)
    assert [tuple(t.shape) for t in ours.state_dict().values()] == \
        [tuple(t.shape) for t in theirs.state_dict().values()]


def randomized(model):
    """Random batch-norm statistics and affine parameters, so that eval-mode outputs depend on every tensor."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


# vgg11 and resnet18 at ImageNet size; the others at a small input, which is cheap and exercises the same layers
@pytest.mark.parametrize("arch,size", [("vgg11", 224), ("resnet18", 224), ("alexnet", 63), ("mobilenet_v2", 64),
                                       ("googlenet", 64)])
def test_torchvision_weights_give_torchvisions_outputs(arch, size):
    torch.manual_seed(0)
    theirs = randomized(torchvision_model(arch))
    ours = build_model(zoo_spec(arch), (3, size, size), 1000)
    loaded = load_torchvision_weights(ours, theirs.state_dict(), arch)
    assert loaded["skipped"] == [] and len(loaded["loaded"]) == len(theirs.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs(x))


def test_the_name_mapping_pairs_tensors_as_documented():
    with torch.device("meta"):
        vgg = build_model(zoo_spec("vgg11"), (3, 224, 224), 1000)
        resnet = build_model(zoo_spec("resnet18"), (3, 224, 224), 1000)
    mapping = key_mapping(vgg, "vgg11")
    assert mapping["layers.0.0.0.weight"] == "features.0.weight"
    assert mapping["layers.18.bias"] == "classifier.6.bias"
    mapping = key_mapping(resnet, "resnet18")
    # stage 2 is layers[5], a repeat of layer lists whose copy 0 (its `first` block) has the strided shortcut
    assert mapping["layers.5.0.0.body.0.weight"] == "layer2.0.conv1.weight"
    assert mapping["layers.5.0.0.shortcut.conv.weight"] == "layer2.0.downsample.0.weight"
    assert mapping["layers.5.0.0.shortcut.bn.running_var"] == "layer2.0.downsample.1.running_var"
    assert mapping["layers.5.1.0.body.0.weight"] == "layer2.1.conv1.weight"
    assert mapping["layers.10.weight"] == "fc.weight"


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(1)
    model = randomized(torchvision.models.resnet18(weights=None))
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_init_weights_loads_a_torchvision_file_named_in_the_config(resnet18_file):
    theirs, path = resnet18_file
    cfg = imagenet("resnet18", 64, f"model.init_weights.path={path}")
    ours = build_model(cfg.model, (3, 64, 64), 1000).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_init_weights_not_strict_keeps_layers_of_another_shape(resnet18_file):
    """Fine-tuning on grey digits with 10 classes: the first convolution and the classifier keep their own
    initialisation, every other tensor comes from the file."""
    theirs, path = resnet18_file
    cfg = compose(["model=resnet18", "data=digits", f"model.init_weights.path={path}",
                   "model.init_weights.strict=false"])
    ours = build_model(cfg.model, (1, 32, 32), 10)
    own, file = ours.state_dict(), theirs.state_dict()
    for mine, other in key_mapping(ours, "resnet18").items():
        if own[mine].shape == file[other].shape:
            assert torch.equal(own[mine], file[other]), mine
    assert own["layers.0.weight"].shape == (64, 1, 7, 7) and own["layers.10.weight"].shape == (10, 512)


@pytest.mark.parametrize("overrides,message", [
    (["model.init_weights.path=/no/such/file.pth"], r"^model\.init_weights\.path: no file at /no/such/file\.pth$"),
    (["+model.init_weights.pth=x"], r"^model\.init_weights\.pth: unknown key; did you mean 'path'\?"),
    (["model.init_weights.torchvision=resnet19"], r"^model\.init_weights\.torchvision: must be one of alexnet, "),
    (["model.init_weights.strict=maybe"], r"^model\.init_weights\.strict: must be true or false"),
])
def test_init_weights_mistakes_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model(imagenet("resnet18", 32, *overrides).model, (3, 32, 32), 1000)


def test_init_weights_that_do_not_fit_are_config_errors(resnet18_file, tmp_path):
    _, path = resnet18_file
    with pytest.raises(ConfigError, match=r"^model\.init_weights: fc\.weight has shape \[1000, 512\] but the model's "
                                          r"layers\.10\.weight has \[10, 512\]; set strict: false"):
        build_model(imagenet("resnet18", 32, f"model.init_weights.path={path}").model, (3, 32, 32), 10)
    with pytest.raises(ConfigError, match=r"^model\.init_weights: the model has \d+ tensors but torchvision's "
                                          r"resnet18 has 122"):
        build_model(imagenet("resnet18", 32, f"model.init_weights.path={path}", "model.depth=2").model,
                    (3, 32, 32), 1000)
    other = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, other)
    with pytest.raises(ConfigError, match=r"^model\.init_weights: the weights are not torchvision's resnet18: "
                                          r"missing conv1\.weight"):
        build_model(imagenet("resnet18", 32, f"model.init_weights.path={other}").model, (3, 32, 32), 1000)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"^model\.init_weights: cannot read .*garbage\.pth as a state_dict"):
        build_model(imagenet("resnet18", 32, f"model.init_weights.path={garbage}").model, (3, 32, 32), 1000)


def test_cli_reports_a_missing_weights_file_in_one_line(tmp_path):
    proc = run_cli(["mode=summary", "model=resnet18", "model.init_weights.path=/no/such/resnet18.pth"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: model.init_weights.path: no file at /no/such/resnet18.pth"
    assert "Traceback" not in proc.stderr and REPO.exists()
