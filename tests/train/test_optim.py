"""optim/ (sgd with momentum and Nesterov, adam, adamw: lr, betas, eps, weight_decay coupled or decoupled) and loss/
(focal with gamma, squared, absolute) in real runs, against formulas written here.

Each run trains 3 epochs of one whole-split batch (no augmentation, a constant learning rate). Torch's global
optimizer hooks record every step's weights and gradients; the update rules of Sutskever et al. (SGD with
Nesterov momentum, as torch writes it), Kingma & Ba (Adam) and Loshchilov & Hutter (AdamW) are replayed on those
gradients, and each epoch's logged training loss is recomputed from that epoch's starting weights with the
objective's formula."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from cnnrun import build_model, compose, run
from cnnrun.config import to_plain
from cnnrun.data import load_data
from tests.conftest import QUIET
from tests.train.test_schedules import optimizer_steps

EPOCHS = 3
WHOLE_SPLIT = [*QUIET, "logger=none", "data.train_fraction=0.2", "data.batch_size=1024", "data.augment=null",
               "sched=none", f"trainer.max_epochs={EPOCHS}", "trainer.limit_val_batches=1",
               "trainer.limit_test_batches=1"]


def sgd(settings, weights, grads):
    """torch.optim.SGD's rule: g = grad + wd w; buf = g at the first step, then momentum buf + g; the step is
    g + momentum buf with Nesterov, buf without."""
    lr, momentum, wd, nesterov = settings["lr"], settings["momentum"], settings["weight_decay"], settings["nesterov"]
    buffers, w = [None] * len(weights), [p.clone() for p in weights]
    for t, grad in enumerate(grads):
        for i, g in enumerate(grad):
            g = g + wd * w[i]
            buffers[i] = g.clone() if t == 0 else momentum * buffers[i] + g
            w[i] = w[i] - lr * (g + momentum * buffers[i] if nesterov else buffers[i])
        yield [p.clone() for p in w]


def adam(settings, weights, grads, decoupled):
    """Adam (coupled L2: g = grad + wd w) or AdamW (decoupled: w = w (1 - lr wd) before the step), with bias
    correction: w -= lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps)."""
    lr, wd, eps = settings["lr"], settings["weight_decay"], settings.get("eps", 1e-8)
    b1, b2 = settings["betas"]
    m, v, w = [0.0] * len(weights), [0.0] * len(weights), [p.clone() for p in weights]
    for t, grad in enumerate(grads, start=1):
        for i, g in enumerate(grad):
            if decoupled:
                w[i] = w[i] * (1 - lr * wd)
            else:
                g = g + wd * w[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            w[i] = w[i] - lr * (m[i] / (1 - b1 ** t)) / ((v[i] / (1 - b2 ** t)).sqrt() + eps)
        yield [p.clone() for p in w]


def focal(logp, t, gamma):
    return -(t * (1 - logp.exp()).pow(gamma) * logp).sum(1).mean()


OBJECTIVES = {  # on softmax probabilities p (log p given) and one-hot targets t
    "focal": lambda logp, t, cfg: focal(logp, t, cfg["gamma"]),
    "squared": lambda logp, t, cfg: (logp.exp() - t).pow(2).sum(1).mean(),
    "absolute": lambda logp, t, cfg: (logp.exp() - t).abs().sum(1).mean(),
}
CASES = {
    "sgd-nesterov-focal": (["optim=sgd", "optim.lr=0.05", "optim.momentum=0.5", "optim.nesterov=true",
                            "optim.weight_decay=0.01", "loss=focal", "loss.gamma=1.5"], sgd),
    "adam-squared": (["optim=adam", "optim.lr=0.01", "optim.betas=[0.8,0.9]", "+optim.eps=0.001",
                      "optim.weight_decay=0.01", "loss=squared"], lambda s, w, g: adam(s, w, g, decoupled=False)),
    "adamw-absolute": (["optim=adamw", "optim.lr=0.01", "optim.betas=[0.8,0.9]", "+optim.eps=0.001",
                        "optim.weight_decay=0.1", "loss=absolute"], lambda s, w, g: adam(s, w, g, decoupled=True)),
}


@pytest.mark.parametrize("case", CASES)
def test_optimizer_and_objective_follow_their_formulas(tmp_path, case):
    overrides, rule = CASES[case]
    cfg = compose([*WHOLE_SPLIT, *overrides])
    with optimizer_steps() as steps:
        run(cfg, output_dir=tmp_path)
    assert len(steps) == EPOCHS  # one whole-split batch per epoch
    plain = to_plain(cfg)
    for t, expected in enumerate(rule(plain["optim"], steps[0]["before"], [s["grad"] for s in steps])):
        for ours, theirs in zip(steps[t]["after"], expected, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)

    data = plain["data"]
    splits = load_data({**data, "normalize": False})
    x, y = splits.train_x, splits.train_y
    assert len(y) <= 1024
    x = (x - x.mean()) / x.std()  # the training split's statistics (one channel)
    model = build_model(plain["model"], data["input_shape"], data["num_classes"])
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    for epoch in range(EPOCHS):
        with torch.no_grad():
            for p, value in zip(model.parameters(), steps[epoch]["before"], strict=True):
                p.copy_(value)
            logp = F.log_softmax(model.eval()(x).double(), dim=1)
        expected = float(OBJECTIVES[plain["loss"]["name"]](logp, F.one_hot(y, 10).double(), plain["loss"]))
        assert history[epoch]["train/loss"] == pytest.approx(expected, rel=1e-5)
        assert abs(expected - float(F.nll_loss(logp, y))) > 1e-3  # not cross-entropy's value
