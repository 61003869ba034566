"""trainer.gradient_clip_val, trainer.gradient_clip_algorithm and trainer.accumulate_grad_batches from the command
line to the weights: one `python -m cnnrun -m` sweep (one job per clipping algorithm, 7 batches accumulated by 3: two
full windows and a short one), its checkpoints against a plain PyTorch loop replaying the same batches
(tests/train/test_stepping.py's reference_fit: zero_grad, backward of loss / 3, torch's clip_grad_norm_ or
clip_grad_value_, SGD step).
"""
import json
import math

import pytest
import torch

from cnnrun import build_model, compose
from cnnrun.config import to_plain
from cnnrun.data import load_data
from cnnrun.train.datamodule import InMemoryDataModule
from tests.conftest import run_cli
from tests.train.test_stepping import reference_fit

CLIP, ACCUMULATE, BATCHES = 0.01, 3, 7
COMMON = ["trainer.max_epochs=1", f"trainer.limit_train_batches={BATCHES}", "data.train_fraction=0.25",
          "trainer.accelerator=cpu", "logger=none", "callbacks.progress_bar.refresh_rate=0",
          f"trainer.gradient_clip_val={CLIP}", f"trainer.accumulate_grad_batches={ACCUMULATE}"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """{algorithm: the final weights} of the CLI sweep, and the replay's config, initial weights and batches."""
    cwd = tmp_path_factory.mktemp("cli")
    proc = run_cli(["-m", "trainer.gradient_clip_algorithm=norm,value", *COMMON], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = {}
    for metrics in (cwd / "outputs" / "sweeps").glob("*/*/metrics.json"):
        record = json.loads(metrics.read_text())
        assert record["status"] == "completed", record["error"]
        algorithm = next(o.split("=")[1] for o in record["overrides"] if "gradient_clip_algorithm" in o)
        ckpt = torch.load(metrics.parent / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == math.ceil(BATCHES / ACCUMULATE)  # optimizer steps: two full windows, one short
        weights[algorithm] = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    assert set(weights) == {"norm", "value"}
    cfg = to_plain(compose(COMMON))
    torch.manual_seed(cfg["seed"])  # the run seeds, then builds the model: the same initial weights
    initial = build_model(cfg["model"], cfg["data"]["input_shape"], cfg["data"]["num_classes"]).state_dict()
    splits = load_data(cfg["data"])
    loader = InMemoryDataModule(splits, cfg["data"]["batch_size"], cfg["seed"], data=cfg["data"]).train_dataloader()
    batches = [b for b, _ in zip(loader, range(BATCHES))]  # epoch 0's first batches, augmented as in training
    return weights, cfg, initial, [batches]


def assert_weights(ours, reference, same=True):
    close = all(torch.allclose(ours[k], v, rtol=1e-5, atol=1e-6) for k, v in reference.state_dict().items())
    assert close is same


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_clipping_and_accumulation_from_the_command_line(sweep, algorithm):
    weights, cfg, initial, batches = sweep
    other = {"norm": "value", "value": "norm"}[algorithm]
    assert_weights(weights[algorithm], reference_fit(cfg, initial, batches, clip=CLIP, algorithm=algorithm,
                                                     accumulate=ACCUMULATE)[0])
    # each option changed the result: without clipping, with the other algorithm, without accumulation
    assert_weights(weights[algorithm], reference_fit(cfg, initial, batches, accumulate=ACCUMULATE)[0], same=False)
    assert_weights(weights[algorithm], reference_fit(cfg, initial, batches, clip=CLIP, algorithm=other,
                                                     accumulate=ACCUMULATE)[0], same=False)
    assert_weights(weights[algorithm], reference_fit(cfg, initial, batches, clip=CLIP, algorithm=algorithm)[0],
                   same=False)
