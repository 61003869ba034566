"""regularization.l1 and regularization.ema_decay in real runs, against references written here: the L1 term's
value and subgradient (lambda * sum |W|, lambda * sign(W)) and a hand-written exponential moving average of the
weights each optimizer step produced (read with torch's global optimizer hooks)."""
import json

import pytest
import torch
from torch import nn

from cnnrun import build_model, compose, run
from cnnrun.config import to_plain
from cnnrun.layers.local import LocalConv
from tests.conftest import QUIET
from tests.train.test_schedules import optimizer_steps

# A small model with every kind of parameter: a fixed (untrained) kernel, a convolution, batch normalisation,
# a local (unshared) convolution and a linear layer, with biases.
MIXED_LAYERS = ("model.layers=[{fixed_conv: {kernel: sharpen}}, {conv: {out_channels: 4, kernel_size: 3}}, bn, relu,"
                " {maxpool: {kernel_size: 2}}, {local_conv: {out_channels: 2, kernel_size: 3}}, relu, flatten,"
                " {linear: {out_features: 10}}]")
LAMBDA = 0.01


def one_step(tmp_path, *overrides: str):
    """One optimizer step of a digits run: (the step's record, the logged training loss of its batch, config)."""
    cfg = compose([*QUIET, "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.train_fraction=0.2",
                   *overrides])
    with optimizer_steps() as steps:
        run(cfg, output_dir=tmp_path)
    (step,) = steps
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    return step, history[0]["train/loss"], to_plain(cfg)


def penalised(cfg) -> list[bool]:
    """Per parameter (in parameters() order): is it a trainable weight of a convolution (local ones included) or
    a linear layer, the weights the README's L1 penalty sums over?"""
    data = cfg["data"]
    model = build_model(cfg["model"], data["input_shape"], data["num_classes"])
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, LocalConv)
    chosen = {id(m.weight) for m in model.modules() if isinstance(m, kinds) and m.weight.requires_grad}
    return [id(p) in chosen for p in model.parameters()]


def test_l1_adds_lambda_sum_abs_w_to_the_loss_and_lambda_sign_w_to_the_gradient(tmp_path):
    """Two runs from the same seed, without and with the penalty: the same weights and batch, so the loss differs
    by lambda * sum |W| and each gradient by lambda * sign(W), over conv and linear weights only."""
    plain, plain_loss, cfg = one_step(tmp_path / "plain", MIXED_LAYERS)
    l1, l1_loss, _ = one_step(tmp_path / "l1", MIXED_LAYERS, f"regularization.l1={LAMBDA}")
    mask = penalised(cfg)
    # fixed kernel; conv, bn, local conv and linear weights and biases: three of the nine are penalised
    assert len(mask) == len(plain["before"]) == 9 and sum(mask) == 3
    for w0, w1 in zip(plain["before"], l1["before"]):
        assert torch.equal(w0, w1)  # same start: the difference is the penalty alone
    penalty = sum(float(w.abs().sum()) for w, m in zip(plain["before"], mask) if m)
    assert l1_loss - plain_loss == pytest.approx(LAMBDA * penalty, rel=1e-4)
    for w, g0, g1, m in zip(plain["before"], plain["grad"], l1["grad"], mask):
        if g0 is None:  # the fixed kernel: not trained, no gradient with or without the penalty
            assert g1 is None and not m
            continue
        expected = LAMBDA * torch.sign(w) if m else torch.zeros_like(w)
        torch.testing.assert_close(g1 - g0, expected, rtol=0, atol=1e-6)


def hand_ema(weights: list[list[torch.Tensor]], decay: float) -> list[torch.Tensor]:
    """The average after each optimizer step's weights W_1..W_n, as Lightning's EMAWeightAveraging keeps it: it
    starts as a copy of W_1 (the weights after the first step, not the initial ones) and then, after every step,
    avg = decay * avg + (1 - decay) * W_t."""
    average = [w.clone() for w in weights[0]]
    for step in weights[1:]:
        average = [decay * a + (1 - decay) * w for a, w in zip(average, step)]
    return average


@pytest.fixture(scope="module")
def ema_runs(tmp_path_factory):
    """For decays 0.5 and 0.9: the weights after every optimizer step and the checkpoint written after them, one
    epoch of 6 steps from the same seed (one epoch: its checkpoint follows the last step)."""
    runs = {}
    for decay in (0.5, 0.9):
        out = tmp_path_factory.mktemp(f"ema{decay}")
        cfg = compose([*QUIET, "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=6",
                       "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.train_fraction=0.2",
                       f"regularization.ema_decay={decay}"])
        with optimizer_steps() as steps:
            run(cfg, output_dir=out)
        ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        runs[decay] = ([s["after"] for s in steps], ckpt)
    return runs


def parameters_of(state: dict[str, torch.Tensor], like: list[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters in a state_dict (LeNet-5 has no buffers: its entries are the parameters, in order)."""
    values = list(state.values())
    assert [v.shape for v in values] == [p.shape for p in like]
    return values


@pytest.mark.parametrize("decay", [0.5, 0.9])
def test_ema_weights_are_the_hand_written_average(ema_runs, decay):
    weights, ckpt = ema_runs[decay]
    assert len(weights) == 6
    raw = parameters_of(ckpt["current_model_state"], weights[-1])
    for r, w in zip(raw, weights[-1]):
        torch.testing.assert_close(r, w)  # the checkpoint was written after the last step
    averaged = parameters_of(ckpt["state_dict"], weights[-1])
    for a, h in zip(averaged, hand_ema(weights, decay)):
        torch.testing.assert_close(a, h, rtol=1e-5, atol=1e-6)


def test_ema_decay_matters(ema_runs):
    """The two runs train the same raw weights; their averages differ as the decays say."""
    (w5, c5), (w9, c9) = ema_runs[0.5], ema_runs[0.9]
    for a, b in zip(w5[-1], w9[-1]):
        torch.testing.assert_close(a, b)
    a5, a9 = parameters_of(c5["state_dict"], w5[-1]), parameters_of(c9["state_dict"], w9[-1])
    gap = max(float((x - y).abs().max()) for x, y in zip(a5, a9))
    assert gap > 1e-3  # far above the 1e-6 to which each matches its hand-written average
