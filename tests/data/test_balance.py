"""data.balance on a long-tailed training split (data.imbalance=10): the class-weighted loss of a real run against
torch's cross-entropy with scikit-learn's "balanced" weights written out here, and the class frequencies the
class-balanced sampler draws against the uniform distribution (a chi-square bound)."""
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2

from cnnrun import build_model, compose, run
from cnnrun.config import to_plain
from cnnrun.data import load_data
from cnnrun.train.datamodule import DataModule
from tests.conftest import QUIET
from tests.train.test_schedules import optimizer_steps

IMBALANCED = ["data.imbalance=10"]


def balanced_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """scikit-learn's class_weight="balanced": n_samples / (n_classes * np.bincount(y))."""
    return len(y) / (num_classes * torch.bincount(y, minlength=num_classes).double())


def test_loss_weights_weight_the_training_loss(tmp_path):
    """Whole-split batches (batch_size > training samples, no augmentation): the second epoch's logged training
    loss is the weighted cross-entropy of the whole split at the weights before its optimizer step, whatever the
    order of the samples in the batch."""
    cfg = compose([*QUIET, *IMBALANCED, "data.balance=loss_weights", "data.batch_size=1024", "data.augment=null",
                   "loss.label_smoothing=0", "logger=none", "trainer.max_epochs=2", "trainer.limit_val_batches=1",
                   "trainer.limit_test_batches=1"])
    with optimizer_steps() as steps:
        run(cfg, output_dir=tmp_path)
    assert len(steps) == 2
    logged = json.loads((tmp_path / "metrics.json").read_text())["history"][1]["train/loss"]

    plain = to_plain(cfg)
    data = plain["data"]
    splits = load_data(data)
    model = build_model(plain["model"], data["input_shape"], data["num_classes"])
    with torch.no_grad():
        for p, value in zip(model.parameters(), steps[1]["before"], strict=True):
            p.copy_(value)
        x, y = splits.train_x, splits.train_y
        assert len(y) <= 1024  # one batch per epoch: the whole split
        x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)  # training-split stats
        logits = model.eval()(x)
    weight = balanced_weights(y, data["num_classes"]).float()
    expected = float(F.cross_entropy(logits, y, weight=weight))
    tolerance = 1e-5 * expected
    assert logged == pytest.approx(expected, abs=tolerance)
    unweighted = float(F.cross_entropy(logits, y))
    assert abs(unweighted - expected) > 100 * tolerance  # the weights move the loss far beyond the tolerance


def test_sampler_draws_the_classes_uniformly():
    """Over 3 epochs of class-balanced sampling every class is drawn about equally often: the counts pass a
    chi-square test of uniformity at the 0.9999 level, which the natural long-tailed frequencies fail by far."""
    data = to_plain(compose([*IMBALANCED, "data.balance=sampler"]))["data"]
    splits = load_data(data)
    dm = DataModule(splits, 32, seed=0, data=data)
    dm.setup("fit")
    loader = dm.train_dataloader()
    draws = []
    for epoch in range(3):
        dm.trainer = SimpleNamespace(current_epoch=epoch)  # the epoch counter a trainer advances
        draws.append(torch.cat([y for _, y in loader]))
    n, classes = len(splits.train_y), data["num_classes"]
    assert all(len(d) == n for d in draws)  # an epoch is as many draws as training samples
    assert not torch.equal(draws[0], draws[1])  # a new draw every epoch

    def chi_square(counts: torch.Tensor) -> float:
        expected = counts.sum() / classes
        return float(((counts - expected) ** 2 / expected).sum())

    bound = chi2.ppf(0.9999, classes - 1)
    sampled = torch.bincount(torch.cat(draws), minlength=classes).double()
    natural = 3 * torch.bincount(splits.train_y, minlength=classes).double()
    assert chi_square(sampled) < bound < chi_square(natural) / 10


def test_class_weights_are_n_over_c_times_n_c_and_zero_for_an_absent_class():
    """data.balance=loss_weights' weights against the formula, for C = num_classes even when a class is absent from
    the training split (scikit-learn alone would divide by the classes present)."""
    from cnnrun.data.splits import balanced_class_weights

    y = torch.tensor([0] * 6 + [1] * 3 + [3])  # 10 samples, 4 classes, class 2 absent
    torch.testing.assert_close(balanced_class_weights(y, 4), torch.tensor([10 / 24, 10 / 12, 0.0, 10 / 4]))
    y = torch.randint(0, 7, (500,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(balanced_class_weights(y, 7), balanced_weights(y, 7).float())
