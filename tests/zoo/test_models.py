"""Every model in conf/model/: it declares the input it needs, builds for digits (1x32x32) and 3x32x32 synthetic
data or fails with a clear error naming data.input_shape, its min_size is the true minimum, and it trains briefly on
digits (or on synthetic data of its own rank: sequences, video clips)."""
import pytest
import torch

from cnnrun import ConfigError, build_model, compose, run, summarize
from cnnrun.config import CONFIG_DIR
from cnnrun.model.zoo import shape_override, zoo_names
from tests.zoo.helpers import zoo_spec

MODELS = zoo_names()
CONTRACT = {"lenet5", "nin", "inception", "alexnet", "vgg11", "vgg16", "googlenet", "resnet18", "mobilenet",
            "mobilenet_v2", "xception", "deepface", "sppnet", "netvlad", "dilated", "cnn1d", "c3d"}
DECLARED = ("description", "chapter", "reference_input", "reference_classes", "min_size", "width")
QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "callbacks=none", "logger=none", "trainer.threads=1"]  # see conftest.py


def minimum(model) -> list[int]:
    """min_size per spatial dimension of the model's reference input."""
    rank = len(model["reference_input"]) - 1
    m = model["min_size"]
    return [m] * rank if isinstance(m, int) else list(m)


def takes_32x32_images(model) -> bool:
    return len(model["reference_input"]) == 3 and max(minimum(model)) <= 32


def training_data(model) -> tuple[list[int], list[str]]:
    """(input shape, data overrides): digits for image models (at 32x32, or the model's minimum if larger);
    synthetic data of the reference shape for the others (sequences, video clips)."""
    ref = list(model["reference_input"])
    # small splits: evaluation runs over whole splits (test, validation and the training split)
    small = ["data.batch_size=16", "data.test_fraction=0.03", "data.val_fraction=0.03", "data.train_fraction=0.04"]
    if len(ref) == 3:
        shape = [1, *[max(32, m) for m in minimum(model)]]
        return shape, ["data=digits", f"data.input_shape={shape_override(shape)}", *small]
    return ref, ["data=synthetic", f"data.input_shape={shape_override(ref)}", "data.num_classes=10",
                 "data.num_samples=1000", *small]


def test_the_zoo_is_enumerated():
    assert CONTRACT <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_model_declares_what_it_is_and_the_input_it_needs(name):
    text = (CONFIG_DIR / "model" / f"{name}.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert text.startswith("# ") and len(header.splitlines()) >= 2, "start with a header comment: what, paper, section"
    model = zoo_spec(name)
    for key in DECLARED:
        assert key in model, f"conf/model/{name}.yaml must declare '{key}'"
    for section in str(model["chapter"]).split(", "):
        assert section in header, f"the header should name chapter section {section}"
    assert model["name"] == name


@pytest.mark.parametrize("name", MODELS)
def test_model_builds_for_grey_and_colour_32x32_or_names_the_input_it_needs(name):
    for data, device in ((["data=digits"], "meta"),  # shapes only (the 100M-parameter models take seconds to build)
                         (["data=synthetic", "data.input_shape=[3,32,32]", "data.num_classes=10"], "cpu")):
        cfg = compose([f"model={name}", *data])
        shape = tuple(cfg.data.input_shape)
        if takes_32x32_images(zoo_spec(name)):
            with torch.device(device):
                model = build_model(cfg.model, shape, cfg.data.num_classes)
            assert model.output_shape == (10,)
            if device == "cpu":
                out = model.eval()(torch.randn(2, *shape))
                assert out.shape == (2, 10) and torch.isfinite(out).all()
        else:
            with pytest.raises(ConfigError, match=rf"^data\.input_shape: model {name} (takes|needs) "):
                build_model(cfg.model, shape, cfg.data.num_classes)


@pytest.mark.parametrize("name", MODELS)
def test_min_size_is_the_smallest_input_the_layers_accept(name):
    model = zoo_spec(name)
    ref, low = list(model["reference_input"]), minimum(model)
    with torch.device("meta"):  # shapes only: nothing is allocated
        for extra in (0, 1):
            shape = [ref[0], *[m + extra for m in low]]
            assert build_model(model, shape, 10).output_shape == (10,)
        for dim, m in enumerate(low):
            if m == 1:
                continue
            smaller = [ref[0], *low]
            smaller[1 + dim] = m - 1
            with pytest.raises(ConfigError, match=rf"^data\.input_shape: model {name} needs a spatial size of at "):
                build_model(model, smaller, 10)
            # without the declared minimum, the layers themselves cannot be built at that size
            with pytest.raises(ConfigError, match=r"^model\.layers"):
                build_model({k: v for k, v in model.items() if k != "min_size"}, smaller, 10)
        other_rank = [ref[0], *[64] * (2 if len(ref) == 2 else len(ref) - 2)]
        with pytest.raises(ConfigError, match=rf"^data\.input_shape: model {name} takes "):
            build_model(model, other_rank, 10)


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_briefly(name, tmp_path):
    model = zoo_spec(name)
    shape, data = training_data(model)
    with torch.device("meta"):
        cost = summarize(model, shape, 10)
    # heavy networks (alexnet and vgg: 60-130M parameters; nin, inception, xception, c3d: over 100M MACs per sample)
    # train at a quarter of their width to keep the suite fast; they build and run at full width in the test above
    heavy = cost["total_params"] > 20_000_000 or cost["macs"] > 100_000_000
    metrics = run(compose([f"model={name}", *data, *QUICK, *(["model.width=0.25"] if heavy else [])]),
                  output_dir=tmp_path)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["train/loss"] > 0
