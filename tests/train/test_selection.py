"""Which checkpoint is tested: the monitor, its tie-break on validation loss, and early stopping.

The expected epoch is computed here from the run's per-epoch history (max val/acc, ties broken by the lowest
val/loss; a patience counter for early stopping), and best.ckpt's weights are evaluated on the validation split with a
plain torch loop, so the checks do not go through cnnrun's selection code.
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from cnnrun import ConfigError, build_model, compose, run
from cnnrun.config import to_plain
from cnnrun.data import load_data
from tests.conftest import QUIET

# Learnable synthetic patterns (float inputs, not normalised; 41 validation images): val/acc reaches its maximum on
# several epochs and the first of them does not have the lowest val/loss, which is on yet another epoch overall (the
# tests check these premises on the history).
TIES = ["data=synthetic", "data.input_shape=[1,16,16]", "data.num_samples=512", "optim.lr=0.3",
        "loss.label_smoothing=0", "seed=1", "logger=none"]


def fit(overrides, out):
    run(compose([*QUIET, *overrides]), output_dir=out)
    return json.loads((out / "metrics.json").read_text())


def evaluate_on_val(overrides, ckpt_path, split="val"):
    """(loss, acc) of a checkpoint's weights on a split (the validation split unless told): a plain forward pass."""
    cfg = to_plain(compose(overrides))
    data = load_data(cfg["data"])
    model = build_model(cfg["model"], cfg["data"]["input_shape"], cfg["data"]["num_classes"])
    state = torch.load(ckpt_path, weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    model.eval()
    x, y = getattr(data, f"{split}_x").float(), getattr(data, f"{split}_y")
    with torch.no_grad():
        logits = model(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def best_epoch(history):
    """The epoch with the highest val/acc; among exact ties, the lowest val/loss (the first on a full tie)."""
    return min(history, key=lambda h: (-h["val/acc"], h["val/loss"]))["epoch"]


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    out = tmp_path_factory.mktemp("tied")
    return out, fit([*TIES, "trainer.max_epochs=8"], out)


def test_ties_on_val_acc_go_to_the_lowest_val_loss(tied):
    out, record = tied
    history = record["history"]
    top = max(h["val/acc"] for h in history)
    tied_epochs = [h["epoch"] for h in history if h["val/acc"] == top]
    expected = min((h for h in history if h["val/acc"] == top), key=lambda h: h["val/loss"])["epoch"]
    # the run must be one where the rule matters: Lightning alone would keep tied_epochs[0]
    assert len(tied_epochs) >= 2 and expected != tied_epochs[0], history
    selected = record["selected"]
    assert selected["epoch"] == expected == best_epoch(history)
    assert selected["monitor"] == "val/acc" and selected["value"] == top and selected["tie_break"] == "val/loss"
    assert selected["tied_epochs"] == tied_epochs
    assert f"epoch {expected}" in selected["reason"] and "val/loss" in selected["reason"]
    ckpt = out / "checkpoints" / "best.ckpt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == expected
    chosen = next(h for h in history if h["epoch"] == expected)
    loss, acc = evaluate_on_val([*TIES, "trainer.max_epochs=8"], ckpt)
    assert acc == pytest.approx(chosen["val/acc"], abs=1e-6) and loss == pytest.approx(chosen["val/loss"], rel=1e-5)
    assert record["metrics"]["best/val_acc"] == pytest.approx(top)


@pytest.fixture(scope="module")
def by_loss(tmp_path_factory):
    """The same run with callbacks.checkpoint.monitor=val/loss (mode min)."""
    out = tmp_path_factory.mktemp("by_loss")
    return out, fit([*TIES, "trainer.max_epochs=8", "callbacks.checkpoint.monitor=val/loss",
                     "callbacks.checkpoint.mode=min"], out)


def test_another_monitor_selects_by_it(by_loss):
    out, record = by_loss
    history = record["history"]
    expected = min(history, key=lambda h: h["val/loss"])["epoch"]
    assert expected != best_epoch(history)  # not the epoch val/acc would choose
    assert record["selected"]["epoch"] == expected and record["selected"]["monitor"] == "val/loss"
    assert record["selected"]["tie_break"] is None  # the monitor itself: nothing to break ties with
    assert torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == expected
    chosen = next(h for h in history if h["epoch"] == expected)
    assert record["metrics"]["best/val_acc"] == pytest.approx(chosen["val/acc"])


def test_the_test_split_and_the_training_split_are_evaluated_with_the_selected_weights(by_loss):
    """test/* and train_eval/* (the generalization gap's training accuracy) are the selected checkpoint's, not the
    last epoch's weights."""
    out, record = by_loss
    overrides = [*TIES, "trainer.max_epochs=8", "callbacks.checkpoint.monitor=val/loss", "callbacks.checkpoint.mode=min"]
    best, last = out / "checkpoints" / "best.ckpt", out / "checkpoints" / "last.ckpt"
    metrics = record["metrics"]
    for split, stage in (("test", "test"), ("train", "train_eval")):
        loss, acc = evaluate_on_val(overrides, best, split)
        assert acc == pytest.approx(metrics[f"{stage}/acc"], abs=1e-6), stage
        assert loss == pytest.approx(metrics[f"{stage}/loss"], rel=1e-5), stage
        assert evaluate_on_val(overrides, last, split)[0] != pytest.approx(loss, rel=1e-5)  # the premise: they differ


def test_last_checkpoint_holds_the_last_epoch(by_loss):
    """last.ckpt (for resuming) is written every epoch, also after an epoch that is not a new best."""
    out, record = by_loss
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert record["selected"]["epoch"] < 7 and last["epoch"] == 7
    batch_size = OmegaConf.load(out / "config.yaml").data.batch_size
    assert last["global_step"] == 8 * math.ceil(record["data_sizes"]["train"] / batch_size)


def stop_epoch(history, patience, monitor="val/acc", mode="max", min_delta=0.0):
    """Where a patience counter stops: an epoch improves when it beats the best so far by more than min_delta."""
    best, waited = None, 0
    for h in history:
        value = h[monitor] if mode == "max" else -h[monitor]
        if best is None or value - min_delta > best:
            best, waited = value, 0
        else:
            waited += 1
            if waited >= patience:
                return h["epoch"]
    return None


@pytest.mark.parametrize("overrides", [
    ["generalization=early_stopping"],
    ["callbacks.early_stopping.enabled=true", "callbacks.early_stopping.monitor=val/loss",
     "callbacks.early_stopping.mode=min", "callbacks.early_stopping.patience=1",
     "callbacks.early_stopping.min_delta=0.3"],  # large: an epoch that improves by less stops the run earlier
], ids=["method", "val_loss"])
def test_early_stopping_stops_when_validation_stalls_and_tests_the_best(overrides, tmp_path):
    record = fit([*TIES, "seed=0", "trainer.max_epochs=20", *overrides], tmp_path / "run")
    history = record["history"]
    early = to_plain(OmegaConf.load(tmp_path / "run" / "config.yaml"))["callbacks"]["early_stopping"]
    assert early["enabled"]
    expected_stop = stop_epoch(history, early["patience"], early["monitor"], early["mode"], early["min_delta"])
    assert expected_stop == history[-1]["epoch"] < 19  # stopped where the counter says, before max_epochs
    expected = best_epoch(history)
    assert record["selected"]["epoch"] == expected
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    assert record["best_checkpoint"] == str(ckpt)
    chosen = next(h for h in history if h["epoch"] == expected)
    loss, acc = evaluate_on_val(TIES, ckpt)  # best.ckpt holds that epoch's weights
    assert acc == pytest.approx(chosen["val/acc"], abs=1e-6) and loss == pytest.approx(chosen["val/loss"], rel=1e-5)
    assert acc == max(h["val/acc"] for h in history)
    tested = run(compose([*QUIET, *TIES, "mode=test", f"ckpt_path={ckpt}"]), output_dir=tmp_path / "test")
    assert tested["test/acc"] == record["metrics"]["test/acc"]


def test_without_early_stopping_all_epochs_run(tied):
    _, record = tied
    assert record["epochs"] == 8 and stop_epoch(record["history"], patience=2) is not None  # it would have stopped


def test_selection_rule_is_exact():
    """The monitor decides first; the tie-break only among exactly equal values; NaN never wins."""
    from cnnrun.train.trainer import improves

    assert improves(1.0, 0.2, 1.0, 0.3)                      # tie on val/acc, lower val/loss
    assert not improves(1.0, 0.3, 1.0, 0.3)                  # a full tie keeps the earlier epoch
    assert not improves(0.99, 1e-9, 1.0, 10.0)               # no weighted sum: a lower val/acc never wins
    assert improves(1.0, 10.0, 0.99, 1e-9)
    assert improves(0.2, None, 0.3, None, mode="min")
    assert not improves(float("nan"), 0.1, 0.5, 0.2) and improves(0.5, 0.2, float("nan"), 0.1)
    assert improves(0.1, None, None, None)


@pytest.mark.parametrize("override,key", [
    ("callbacks.checkpoint.monitor=val/accuracy", "callbacks.checkpoint.monitor"),
    ("callbacks.checkpoint.mode=maximum", "callbacks.checkpoint.mode"),
    ("callbacks.checkpoint.tie_break=loss", "callbacks.checkpoint.tie_break"),
    ("callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience"),
])
def test_bad_selection_settings_are_config_errors(override, key, tmp_path):
    with pytest.raises(ConfigError) as info:
        run(compose([*QUIET, override, "callbacks.early_stopping.enabled=true"]), output_dir=tmp_path)
    assert str(info.value).startswith(f"{key}: ")
