"""callbacks.checkpoint.tie_break: null and tie_break_mode: max in real runs (the default, val/loss with mode min, is
proven in tests/train/test_selection.py). The expected epoch is computed here from the run's per-epoch history, and
best.ckpt holds that epoch."""
import pytest
import torch

from tests.train.test_selection import TIES, fit


def tied_epochs(history):
    top = max(h["val/acc"] for h in history)
    return [h for h in history if h["val/acc"] == top]


@pytest.mark.parametrize("setting,choose", [
    ("callbacks.checkpoint.tie_break=null", lambda tied: tied[0]),  # the first, as Lightning keeps it
    ("callbacks.checkpoint.tie_break_mode=max", lambda tied: max(tied, key=lambda h: h["val/loss"])),
], ids=["no_tie_break", "highest_val_loss"])
def test_ties_on_val_acc_follow_the_tie_break_setting(tmp_path, setting, choose):
    record = fit([*TIES, "trainer.max_epochs=8", setting], tmp_path)
    tied = tied_epochs(record["history"])
    default = min(tied, key=lambda h: h["val/loss"])["epoch"]
    expected = choose(tied)["epoch"]
    assert len(tied) >= 2 and expected != default, record["history"]  # the setting decides here
    assert record["selected"]["epoch"] == expected
    assert torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == expected
