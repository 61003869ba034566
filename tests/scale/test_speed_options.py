"""GPU speed options run on the CPU too: channels_last, torch.compile, mixed precision, cudnn benchmark."""
import json

import pytest
import torch

from cnnrun import ConfigError, compose, run
from cnnrun.config import to_plain
from cnnrun.train.module import Classifier
from cnnrun.train.trainer import check_trainer_config

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "logger=none",
         "callbacks.progress_bar.refresh_rate=0"]


@pytest.mark.parametrize("overrides, fmt", [
    (["model=lenet5", "data=synthetic", "data.input_shape=[3,32,32]"], torch.channels_last),
    (["model=c3d", "data=synthetic", "data.input_shape=[3,8,16,16]", "model.width=0.25"], torch.channels_last_3d),
    (["model=cnn1d", "data=synthetic", "data.input_shape=[1,40]"], None),
])
def test_channels_last_converts_model_and_batches(overrides, fmt):
    plain = to_plain(compose([*overrides, "trainer.channels_last=true"]))
    module = Classifier(plain)
    reference = Classifier(plain)
    reference.load_state_dict(module.state_dict())
    module.setup("fit")
    assert module.memory_format == fmt
    x = torch.randn(3, *plain["data"]["input_shape"])
    xb = module.formatted(x)
    if fmt is not None:
        convs = [m.weight for m in module.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
        assert convs and all(w.is_contiguous(memory_format=fmt) for w in convs)
        assert xb.is_contiguous(memory_format=fmt) and not x.is_contiguous(memory_format=fmt)
    module.eval(), reference.eval()
    with torch.no_grad():
        assert torch.allclose(module(xb), reference(x), atol=1e-5)  # same function, other layout


def test_compiled_bf16_channels_last_run_and_its_checkpoint_loads_uncompiled(tmp_path):
    metrics = run(compose([*QUICK, "trainer.channels_last=true", "trainer.precision=bf16-mixed",
                           "trainer.compile={backend: eager}", "trainer.benchmark=true"]), output_dir=tmp_path)
    assert 0 <= metrics["test/acc"] <= 1
    record = json.loads((tmp_path / "metrics.json").read_text())
    ckpt = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])  # parameter names unchanged by compiling
    restored = Classifier.load_from_checkpoint(record["best_checkpoint"], map_location="cpu")
    assert restored.config["trainer"]["compile"] == {"backend": "eager"}


def test_speed_option_errors_name_the_key():
    base = to_plain(compose([]))["trainer"]
    with pytest.raises(ConfigError, match=r"trainer.compile.mod: is not an argument of torch.compile.*mode"):
        check_trainer_config({**base, "compile": {"mod": "max-autotune"}})
    with pytest.raises(ConfigError, match=r"trainer.compile: must be"):
        check_trainer_config({**base, "compile": "yes"})
    with pytest.raises(ConfigError, match=r"trainer.channels_last: must be true or false"):
        check_trainer_config({**base, "channels_last": "nhwc"})
