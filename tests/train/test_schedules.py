"""Every learning-rate schedule (sched/) against its formula, written here, at every optimizer step of a real fit.

The learning rate of each step is read with torch's global optimizer hooks (outside cnnrun): the value in
``param_groups[0]['lr']`` when ``optimizer.step()`` is called is the one that step uses.
"""
import math
from contextlib import contextmanager

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from cnnrun import compose, run
from tests.conftest import QUIET

LR = 0.1  # conf/optim/sgd.yaml's lr, set explicitly below so that the formulas do not depend on the default


@contextmanager
def optimizer_steps():
    """Record every optimizer step taken inside the block (by any optimizer, through torch's global hooks): the
    learning rate it used, the parameters and gradients before it and the parameters after it, in the optimizer's
    parameter order (the model's ``parameters()`` order)."""
    steps: list[dict] = []

    def params(optimizer):
        return [p for group in optimizer.param_groups for p in group["params"]]

    def before(optimizer, args, kwargs):
        steps.append({"lr": optimizer.param_groups[0]["lr"], "momentum": optimizer.param_groups[0].get("momentum"),
                      "before": [p.detach().clone() for p in params(optimizer)],
                      "grad": [None if p.grad is None else p.grad.detach().clone() for p in params(optimizer)]})

    def after(optimizer, args, kwargs):
        steps[-1]["after"] = [p.detach().clone() for p in params(optimizer)]

    handles = [register_optimizer_step_pre_hook(before), register_optimizer_step_post_hook(after)]
    try:
        yield steps
    finally:
        for handle in handles:
            handle.remove()


def fit_learning_rates(tmp_path, epochs: int, batches: int, *overrides: str, key: str = "lr") -> list[float]:
    """The learning rate (or another ``key`` of the first parameter group) of every optimizer step of a short digits
    fit (``batches`` steps per epoch)."""
    cfg = compose([*QUIET, "logger=none", f"optim.lr={LR}", f"trainer.max_epochs={epochs}",
                   f"trainer.limit_train_batches={batches}", "data.train_fraction=0.2",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", *overrides])
    with optimizer_steps() as steps:
        run(cfg, output_dir=tmp_path)
    assert len(steps) == epochs * batches  # one optimizer step per batch
    return [s[key] for s in steps]


def cosine_with_warmup(t: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up over ``warmup`` steps reaching lr at step warmup - 1, then half a cosine from lr (step
    ``warmup``) down towards floor * lr (reached at step ``total``, one past the last)."""
    if t < warmup:
        return LR * (t + 1) / warmup
    progress = (t - warmup) / (total - warmup)
    return LR * (floor + (1 - floor) / 2 * (1 + math.cos(math.pi * progress)))


def one_cycle(t: int, total: int, max_lr: float, pct_start: float, div: float = 25.0,
              final_div: float = 1e4) -> float:
    """torch's OneCycleLR, two phases with cosine annealing (its documented defaults div_factor=25,
    final_div_factor=1e4): from max_lr / div up to max_lr at step pct_start * total - 1, then down to
    max_lr / div / final_div at the last step."""
    initial, final = max_lr / div, max_lr / div / final_div
    peak = pct_start * total - 1
    if t <= peak:
        start, end, pct = initial, max_lr, t / peak
    else:
        start, end, pct = max_lr, final, (t - peak) / (total - 1 - peak)
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


@pytest.mark.parametrize("warmup_epochs,floor", [(1, 0.1), (0, 0.0)])
def test_cosine_with_warmup_and_floor(tmp_path, warmup_epochs, floor):
    epochs, batches = 4, 3
    lrs = fit_learning_rates(tmp_path, epochs, batches, "sched=cosine", f"sched.warmup_epochs={warmup_epochs}",
                             f"sched.min_lr_ratio={floor}")
    total = epochs * batches
    expected = [cosine_with_warmup(t, total, warmup_epochs * batches, floor) for t in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_step_multiplies_by_gamma_every_step_size_epochs(tmp_path):
    epochs, batches, step_size, gamma = 5, 2, 2, 0.5
    lrs = fit_learning_rates(tmp_path, epochs, batches, "sched=step", f"sched.step_size={step_size}",
                             f"sched.gamma={gamma}")
    expected = [LR * gamma ** (epoch // step_size) for epoch in range(epochs) for _ in range(batches)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_onecycle_follows_torchs_two_phase_cosine_policy(tmp_path):
    epochs, batches, ratio, pct_start = 4, 3, 5.0, 0.25
    lrs = fit_learning_rates(tmp_path, epochs, batches, "sched=onecycle", f"sched.max_lr_ratio={ratio}",
                             f"sched.pct_start={pct_start}")
    total = epochs * batches
    expected = [one_cycle(t, total, LR * ratio, pct_start) for t in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert max(lrs) == pytest.approx(LR * ratio, rel=1e-2)  # it reaches optim.lr * max_lr_ratio


def test_onecycle_cycles_the_momentum_unless_told_not_to(tmp_path):
    args = (tmp_path, 4, 3, "sched=onecycle", "optim.momentum=0.5")
    cycled = fit_learning_rates(*args, key="momentum")
    assert cycled[0] == pytest.approx(0.95) and min(cycled) == pytest.approx(0.85, abs=0.01)  # inverse to the lr
    assert fit_learning_rates(*args, "sched.cycle_momentum=false", key="momentum") == [0.5] * 12


def test_none_keeps_the_learning_rate(tmp_path):
    assert fit_learning_rates(tmp_path, 3, 2, "sched=none") == [LR] * 6
