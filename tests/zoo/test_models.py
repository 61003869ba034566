"""Every model in conf/model/ builds for digits (1x32x32) and 3x32x32 synthetic data and trains a few steps."""
import pytest
import torch

from cnnrun import build_model, compose, run
from cnnrun.config import CONFIG_DIR

MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def test_the_zoo_is_enumerated():
    assert {"lenet5", "nin", "inception"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_model_builds_for_grey_and_colour_32x32(name):
    for data in (["data=digits"], ["data=synthetic", "data.input_shape=[3,32,32]", "data.num_classes=10"]):
        cfg = compose([f"model={name}", *data])
        model = build_model(cfg.model, tuple(cfg.data.input_shape), cfg.data.num_classes)
        out = model(torch.randn(2, *cfg.data.input_shape))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_briefly_on_digits(name, tmp_path):
    metrics = run(compose([f"model={name}", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                           "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                           "callbacks.progress_bar.refresh_rate=0", "logger=none"]), output_dir=tmp_path)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["train/loss"] > 0
