"""cnnrun's optimisation step (cnnrun/train/stepping.py) against a plain PyTorch loop on the same batches.

The reference loop is written here with torch only: cross-entropy (with the configured label smoothing),
zero_grad, backward, torch's clipping utilities, optimizer.step and the scheduler's step, on the batches the
Lightning run saw (recorded by a callback). Both the lean path and Lightning's manual_backward /
LightningOptimizer.step path must give the reference's weights.
"""
import copy
import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from cnnrun import build_model, compose
from cnnrun.config import to_plain
from cnnrun.data import load_data
from cnnrun.train.datamodule import InMemoryDataModule
from cnnrun.train.module import Classifier
from cnnrun.train.optim import make_schedule

HOOKS = ("on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")


class Recorder(pl.Callback):
    """The batches of each epoch, the step hooks' calls and the gradient norm the optimizer-step hook sees."""

    def __init__(self):
        self.batches: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self.calls = {name: 0 for name in HOOKS}
        self.norms_before_step: list[float] = []
        self.steps_seen: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.batches.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches[-1].append((batch[0].clone(), batch[1].clone()))

    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        self.calls["on_before_zero_grad"] += 1

    def on_before_backward(self, trainer, pl_module, loss):
        self.calls["on_before_backward"] += 1

    def on_after_backward(self, trainer, pl_module):
        self.calls["on_after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls["on_before_optimizer_step"] += 1
        grads = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
        self.norms_before_step.append(float(torch.stack(grads).norm()))
        self.steps_seen.append(trainer.global_step)


@pytest.fixture(scope="module")
def splits():
    cfg = to_plain(compose(["data.train_fraction=0.25"]))
    return cfg["data"], load_data(cfg["data"])


def lightning_fit(splits, overrides, *, lean, epochs=2, lean_expected=True, **trainer_args):
    """cnnrun's module fitted by Lightning (on the CPU unless ``trainer_args`` say otherwise), with a Recorder."""
    data_cfg, data = splits
    cfg = to_plain(compose(["data.train_fraction=0.25", f"trainer.max_epochs={epochs}", *overrides]))
    torch.manual_seed(0)
    model = build_model(cfg["model"], data_cfg["input_shape"], data_cfg["num_classes"])
    initial = copy.deepcopy(model.state_dict())
    module = Classifier(cfg, model)
    module.lean_step = lean
    recorder = Recorder()
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[recorder],
                         **{"accelerator": "cpu", "devices": 1, **trainer_args})
    trainer.fit(module, datamodule=InMemoryDataModule(data, cfg["data"]["batch_size"], cfg["seed"], data=cfg["data"]))
    assert module.stepper.lean is (lean if lean is not None else lean_expected)
    return cfg, initial, module, trainer, recorder


def reference_fit(cfg, initial, batches, *, clip=None, algorithm="norm", accumulate=1, scaler=None):
    """The plain loop: the same model, initial weights, optimizer settings, schedule and batches (on the batches'
    device). With a ``torch.amp.GradScaler``, torch's fp16 recipe: the forward and the loss under fp16 autocast, the
    scaled loss's backward, unscale_ before clipping, scaler.step and scaler.update."""
    data = cfg["data"]
    device = batches[0][0][0].device
    model = build_model(cfg["model"], data["input_shape"], data["num_classes"])
    model.load_state_dict(initial)
    model.to(device)
    fp16 = partial(torch.autocast, device.type, dtype=torch.float16, enabled=scaler is not None)
    o = cfg["optim"]
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"],
                          weight_decay=o["weight_decay"])
    epochs = len(batches)
    total = sum(math.ceil(len(b) / accumulate) for b in batches)
    schedule = make_schedule(opt, cfg["sched"], total, epochs)
    steps = 0
    for epoch_batches in batches:
        for i, (x, y) in enumerate(epoch_batches):
            if i % accumulate == 0:
                opt.zero_grad(set_to_none=True)
            with fp16():
                loss = F.cross_entropy(model(x), y, label_smoothing=cfg["loss"]["label_smoothing"]) / accumulate
            (loss if scaler is None else scaler.scale(loss)).backward()
            if (i + 1) % accumulate and i + 1 != len(epoch_batches):
                continue
            if scaler is not None:
                scaler.unscale_(opt)
            if clip is not None:
                if algorithm == "norm":
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                else:
                    torch.nn.utils.clip_grad_value_(model.parameters(), clip)
            if scaler is None:
                opt.step()
            else:
                scaler.step(opt)  # skipped when the gradients hold an inf or a NaN
                scaler.update()
            steps += 1
            if schedule is not None and schedule["interval"] == "step":
                schedule["scheduler"].step()
        if schedule is not None and schedule["interval"] == "epoch":
            schedule["scheduler"].step()
    return model, steps, opt.param_groups[0]["lr"]


def assert_same_weights(module, reference, rtol=1e-5, atol=1e-6):
    ours = module.model.state_dict()
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ours[name].cpu(), value.cpu(), rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("lean", [None, False])
@pytest.mark.parametrize("sched", ["cosine", "step"])
def test_steps_match_a_plain_loop(splits, lean, sched):
    """Per-step (cosine with warmup) and per-epoch (step) schedules, on both paths."""
    overrides = (["sched=cosine", "sched.warmup_epochs=1"] if sched == "cosine"
                 else ["sched=step", "sched.step_size=1"])
    cfg, initial, module, trainer, rec = lightning_fit(splits, overrides, lean=lean)
    reference, steps, lr = reference_fit(cfg, initial, rec.batches)
    assert_same_weights(module, reference)
    assert trainer.global_step == steps == sum(len(b) for b in rec.batches)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(lr, rel=1e-12)
    assert lr != cfg["optim"]["lr"]  # the schedule moved the learning rate
    assert rec.calls["on_before_backward"] == rec.calls["on_after_backward"] == steps
    assert rec.calls["on_before_optimizer_step"] == rec.calls["on_before_zero_grad"] == steps
    assert rec.steps_seen == list(range(steps))  # global_step counts the steps taken before this one


@pytest.mark.parametrize("lean", [None, False])
@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_matches_torch(splits, lean, algorithm):
    clip = 0.05 if algorithm == "norm" else 0.002
    cfg, initial, module, trainer, rec = lightning_fit(
        splits, [f"trainer.gradient_clip_val={clip}", f"trainer.gradient_clip_algorithm={algorithm}"], lean=lean)
    reference, _, _ = reference_fit(cfg, initial, rec.batches, clip=clip, algorithm=algorithm)
    assert_same_weights(module, reference)
    unclipped, _, _ = reference_fit(cfg, initial, rec.batches)
    assert not torch.allclose(unclipped.state_dict()["layers.0.weight"], reference.state_dict()["layers.0.weight"])
    # as in Lightning's automatic optimisation, the hook sees the gradients before clipping
    assert max(rec.norms_before_step) > clip


@pytest.mark.parametrize("lean", [None, False])
def test_gradient_accumulation_matches_a_plain_loop(splits, lean):
    cfg, initial, module, trainer, rec = lightning_fit(splits, ["trainer.accumulate_grad_batches=3"], lean=lean)
    reference, steps, lr = reference_fit(cfg, initial, rec.batches, accumulate=3)
    assert_same_weights(module, reference)
    batches = [len(b) for b in rec.batches]
    assert batches[0] % 3 != 0  # the epoch's last window is short: it steps too
    assert trainer.global_step == steps == sum(math.ceil(n / 3) for n in batches)
    assert rec.calls["on_before_backward"] == sum(batches)
    assert rec.calls["on_before_optimizer_step"] == rec.calls["on_before_zero_grad"] == steps
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(lr, rel=1e-12)


def test_lean_path_only_where_lightning_adds_nothing(splits):
    """A profiler, fp16's gradient scaler or another strategy needs Lightning's path; bf16 autocast does not."""
    from cnnrun.train.stepping import lean_possible

    data_cfg, data = splits
    cfg = to_plain(compose(["data.train_fraction=0.25", "trainer.max_epochs=1"]))
    seen = {}

    class Probe(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen[(type(trainer.profiler).__name__, trainer.precision)] = (lean_possible(trainer, pl_module),
                                                                         pl_module.stepper.lean)

    for profiler, precision in ((None, "32-true"), ("simple", "32-true"), (None, "bf16-mixed")):
        torch.manual_seed(0)
        module = Classifier(cfg, build_model(cfg["model"], data_cfg["input_shape"], data_cfg["num_classes"]))
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_train_batches=2, limit_val_batches=0,
                             callbacks=[Probe()], profiler=profiler, precision=precision, accelerator="cpu",
                             devices=1)
        trainer.fit(module, datamodule=InMemoryDataModule(data, 32, 0, data=cfg["data"]))
        assert trainer.global_step == 2
    assert seen == {("PassThroughProfiler", "32-true"): (True, True), ("SimpleProfiler", "32-true"): (False, False),
                    ("PassThroughProfiler", "bf16-mixed"): (True, True)}
