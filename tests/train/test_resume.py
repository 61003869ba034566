"""Resuming from last.ckpt continues the run exactly: 2 epochs, then resumed to 4, equals 4 epochs straight.

Every random stream is in use: the sample order and the augmentation (digits' recipe) have their own per-epoch
generators, dropout (p=0.5) and mixup draw from torch's global one. A per-epoch schedule (step) keeps the learning
rate independent of max_epochs, so that the shorter first run follows the same schedule as the straight one (cosine
and onecycle span max_epochs: a run resumed to more epochs than it was planned for follows the longer schedule).
"""
import copy
import json

import pytest
import torch

from cnnrun import compose, run
from tests.conftest import QUIET

RANDOM = ["model=dilated", "model.width=0.25", "model.depth=0.4", "model.dropout=0.5", "regularization.mixup_alpha=0.2",
          "data.input_shape=[1,16,16]", "data.train_fraction=0.1", "sched=step", "sched.step_size=1",
          "sched.gamma=0.5", "logger=none"]


@pytest.fixture(scope="module")
def base():
    return compose([*QUIET, *RANDOM])  # composed once: the runs differ in max_epochs and ckpt_path only


def fit(base, out, epochs, ckpt_path=None):
    cfg = copy.deepcopy(base)
    cfg.trainer.max_epochs, cfg.ckpt_path = epochs, ckpt_path
    run(cfg, output_dir=out)
    return json.loads((out / "metrics.json").read_text()), torch.load(out / "checkpoints" / "last.ckpt",
                                                                       weights_only=True)


def assert_equal_tensors(a, b, where):
    """Same structure and bit-identical tensors (dicts and lists of tensors and numbers)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_equal_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_resumed_run_equals_the_uninterrupted_one(base, tmp_path):
    record, straight = fit(base, tmp_path / "straight", 4)
    _, first = fit(base, tmp_path / "first", 2)
    resumed_record, resumed = fit(base, tmp_path / "resumed", 4, str(tmp_path / "first" / "checkpoints" / "last.ckpt"))
    assert first["epoch"] == 1 and straight["epoch"] == resumed["epoch"] == 3
    assert straight["global_step"] == resumed["global_step"] == 2 * first["global_step"]
    assert_equal_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")  # weights and BN statistics
    assert_equal_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizer")  # momentum, lr
    assert_equal_tensors(straight["lr_schedulers"], resumed["lr_schedulers"], "schedule")
    lr = straight["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == resumed["optimizer_states"][0]["param_groups"][0]["lr"]
    assert abs(lr - 0.1 * 0.5 ** 4) < 1e-12  # optim.lr halved after each of the 4 epochs
    # the resumed epochs' metrics are the straight run's (the 2-epoch run's epochs came from its checkpoint)
    assert [h["epoch"] for h in resumed_record["history"]] == [2, 3]
    assert resumed_record["history"] == record["history"][2:]


def test_the_global_generator_is_in_use(base, tmp_path, monkeypatch):
    """The premise of the test above: dropout and mixup draw from torch's global generator at every training step
    (without a per-epoch seed, a resumed run would draw other masks and mixing weights)."""
    from cnnrun.train.module import Classifier

    drawn = []
    original = Classifier.training_step

    def spy(self, batch, batch_idx):
        state = torch.get_rng_state()
        loss = original(self, batch, batch_idx)
        drawn.append(not torch.equal(state, torch.get_rng_state()))
        return loss

    monkeypatch.setattr(Classifier, "training_step", spy)
    cfg = copy.deepcopy(base)
    cfg.trainer.max_epochs, cfg.trainer.limit_train_batches = 1, 2
    run(cfg, output_dir=tmp_path)
    assert drawn == [True, True]
