"""Objectives, batch mixing and the L1 penalty against naive implementations; generalization methods compose."""
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from cnnrun import ConfigError, compose, run
from cnnrun.generalization import apply_generalization, method_name
from cnnrun.train.objectives import check_loss_config, check_regularization_config, l1_penalty, make_objective, \
    mix_batch

torch.manual_seed(0)
LOGITS = torch.randn(6, 4)
LABELS = torch.tensor([0, 1, 2, 3, 1, 1])


def _naive(kind, logits, y, gamma=2.0, smoothing=0.0, weight=None):
    total, wsum = 0.0, 0.0
    for i in range(len(y)):
        p = [math.exp(v) for v in logits[i].tolist()]
        z = sum(p)
        p = [v / z for v in p]
        k = len(p)
        t = [(1 - smoothing) * (1.0 if j == y[i] else 0.0) + smoothing / k for j in range(k)]
        if kind == "focal":
            loss = -sum(t[j] * (1 - p[j]) ** gamma * math.log(p[j]) for j in range(k))
        elif kind == "squared":
            loss = sum((p[j] - t[j]) ** 2 for j in range(k))
        else:
            loss = sum(abs(p[j] - t[j]) for j in range(k))
        w = 1.0 if weight is None else weight[int(y[i])]
        total, wsum = total + w * loss, wsum + w
    return total / wsum


@pytest.mark.parametrize("kind", ["focal", "squared", "absolute"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_objectives_match_the_formulas(kind, smoothing):
    loss = make_objective({"name": kind, "gamma": 1.5, "label_smoothing": smoothing})(LOGITS, LABELS)
    assert float(loss) == pytest.approx(_naive(kind, LOGITS, LABELS, 1.5, smoothing), rel=1e-5)


def test_class_weights_match_the_formula_and_torch():
    w = torch.tensor([1.0, 0.5, 2.0, 3.0])
    loss = make_objective({"name": "squared"})(LOGITS, LABELS, w)
    assert float(loss) == pytest.approx(_naive("squared", LOGITS, LABELS, weight=w.tolist()), rel=1e-5)
    focal0 = make_objective({"name": "focal", "gamma": 0.0})(LOGITS, LABELS, w)  # gamma 0 is cross-entropy
    assert float(focal0) == pytest.approx(float(F.cross_entropy(LOGITS, LABELS, weight=w)), rel=1e-5)


def test_cross_entropy_with_soft_targets_is_torchs():
    t = torch.softmax(torch.randn(6, 4), 1)
    loss = make_objective({"name": "cross_entropy", "label_smoothing": 0.1})(LOGITS, t)
    naive = -(((1 - 0.1) * t + 0.1 / 4) * F.log_softmax(LOGITS, 1)).sum(1).mean()
    assert float(loss) == pytest.approx(float(naive), rel=1e-5)


def test_mixup_is_a_convex_combination_of_pairs():
    torch.manual_seed(1)
    x, y = torch.randn(8, 1, 5, 5), torch.arange(8)  # distinct labels: the targets tell who was mixed with whom
    xm, t = mix_batch(x, y, 8, mixup_alpha=0.4, cutmix_alpha=0.0)
    assert torch.allclose(t.sum(1), torch.ones(8))
    for i in range(8):
        lam = float(t[i, i])
        if lam == pytest.approx(1.0):  # paired with itself
            assert torch.allclose(xm[i], x[i])
            continue
        others = t[i].clone()
        others[i] = 0
        j = int(others.argmax())
        assert float(others[j]) == pytest.approx(1 - lam)
        assert torch.allclose(xm[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 2, 40), (8, 1, 12, 12), (4, 1, 6, 8, 8)])
def test_cutmix_label_weight_is_the_pasted_fraction(shape):
    torch.manual_seed(2)
    n = shape[0]
    x = torch.arange(n, dtype=torch.float32).view(-1, *[1] * (len(shape) - 1)).expand(shape).clone()
    xm, t = mix_batch(x, torch.arange(n), n, mixup_alpha=0.0, cutmix_alpha=1.0)
    for i in range(n):
        values = xm[i].unique()
        assert len(values) <= 2 and torch.allclose(t[i].sum(), torch.tensor(1.0))
        for v in values:  # every sample's share of the pixels is its share of the label
            share = float((xm[i] == v).float().mean())
            assert float(t[i, int(v)]) == pytest.approx(share, abs=1e-6)


def test_l1_penalty_sums_conv_and_linear_weights_only():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(8, 3))
    expected = net[0].weight.abs().sum() + net[3].weight.abs().sum()
    assert torch.allclose(l1_penalty(net), expected)


def test_loss_and_regularization_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"loss.name: unknown objective 'focall'.*focal"):
        check_loss_config({"name": "focall"})
    with pytest.raises(ConfigError, match=r"loss.label_smoothing"):
        check_loss_config({"name": "cross_entropy", "label_smoothing": 1.0})
    neutral = {"l1": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "ema_decay": None}
    with pytest.raises(ConfigError, match=r"regularization.mixup: unknown key.*mixup_alpha"):
        check_regularization_config({**neutral, "mixup": 0.2})
    with pytest.raises(ConfigError, match=r"regularization.ema_decay"):
        check_regularization_config({**neutral, "ema_decay": 1.5})


def test_methods_compose_and_scale():
    cfg = compose(["generalization=[label_smoothing,focal,larger_batch,less_data,weight_decay]",
                   "data.train_fraction=0.5", "optim.lr=0.05", "data.batch_size=16"])
    assert method_name(cfg) == "focal+label_smoothing+larger_batch+less_data+weight_decay"
    out = apply_generalization(cfg)
    assert out.loss.name == "focal" and out.loss.label_smoothing == 0.1 and out.optim.weight_decay == 5e-4
    assert out.data.batch_size == 64 and out.optim.lr == pytest.approx(0.2)  # linear scaling rule
    assert out.data.train_fraction == pytest.approx(0.25)
    assert cfg.data.batch_size == 16  # the composed config itself is untouched
    more = apply_generalization(compose(["generalization=more_data", "data.train_fraction=0.8"]))
    assert more.data.train_fraction == 1.0
    sqrt = apply_generalization(compose(["generalization=larger_batch", "optim.lr=0.1",
                                         "generalization.larger_batch.lr_scaling=sqrt"]))
    assert sqrt.optim.lr == pytest.approx(0.2)
    assert method_name(compose([])) is None  # no method chosen: the configs' own recipe


def test_structure_methods_need_the_model_hyperparameter():
    cfg = compose(["generalization=wider"])
    if "width" in cfg.model:
        width = cfg.model.width
        assert apply_generalization(cfg).model.width == pytest.approx(2 * width)
    del_width = OmegaConf.to_container(cfg)
    del_width["model"].pop("width", None)
    with pytest.raises(ConfigError, match=r"generalization.wider.width_factor: model '\w+' exposes no 'width'"):
        apply_generalization(OmegaConf.create(del_width))
    with pytest.raises(ConfigError, match=r"generalization.balanced.balance: .*data.imbalance"):
        apply_generalization(compose(["generalization=balanced"]))
    with pytest.raises(ConfigError, match=r"generalization.baseline.factor: unknown parameter"):
        apply_generalization(compose(["+generalization.baseline.factor=2"]))


def test_a_run_with_mixup_cutmix_l1_and_ema(tmp_path, quick_cfg):
    cfg = quick_cfg("generalization=[mixup,cutmix,l1,ema,label_smoothing]", "logger=none",
                    "trainer.limit_train_batches=5", "data.imbalance=4", "data.balance=loss_weights")
    metrics = run(cfg, output_dir=tmp_path)
    assert 0 <= metrics["test/acc"] <= 1 and 0 <= metrics["train_eval/acc"] <= 1
    assert metrics["gap"] == pytest.approx(metrics["train_eval/acc"] - metrics["best/val_acc"])
    import json

    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["method"] == "cutmix+ema+l1+label_smoothing+mixup"
    counts = record["class_counts"]["train"]  # long-tailed: largest / smallest class = data.imbalance
    assert max(counts) / min(counts) == pytest.approx(4, rel=0.1) and counts[0] == max(counts)
    assert max(record["class_counts"]["test"]) - min(record["class_counts"]["test"]) <= 2  # test stays balanced



def test_ema_runs_are_tested_with_the_averaged_weights(tmp_path, quick_cfg):
    """The best checkpoint's state_dict holds the averaged weights; the test metrics are theirs."""
    import json

    from cnnrun.config import to_plain
    from cnnrun.data import load_data
    from cnnrun.data.loader import BatchTransform
    from cnnrun.train.module import Classifier

    cfg = quick_cfg("generalization=ema", "generalization.ema.set.regularization.ema_decay=0.99", "logger=none",
                    "trainer.max_epochs=1")
    metrics = run(cfg, output_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    ckpt = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    assert "current_model_state" in ckpt  # the raw weights are kept for resuming, the average is the state_dict
    plain = to_plain(cfg)
    module = Classifier(plain)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    splits = load_data(plain["data"])
    x = BatchTransform.for_splits(splits)(splits.test_x)
    with torch.no_grad():
        acc = float((module(x).argmax(1) == splits.test_y).float().mean())
    assert acc == pytest.approx(metrics["test/acc"], abs=1e-6)
    raw = Classifier(plain)
    raw.load_state_dict(ckpt["current_model_state"])
    raw.eval()
    with torch.no_grad():
        assert not torch.allclose(raw(x), module(x))  # averaged and raw weights differ
