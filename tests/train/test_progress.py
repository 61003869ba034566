"""The console while a run trains (cnnrun/train/progress.py): the whole run's bar, epochs from 1, evaluations named,
and the long-run hint."""
import io
import threading
from types import SimpleNamespace

import pytorch_lightning as pl
import torch

from cnnrun.train.progress import LongRunHint, RunProgressBar


class Tiny(pl.LightningModule):
    def __init__(self, eval_stage="test"):
        super().__init__()
        self.net, self.eval_stage = torch.nn.Linear(4, 2), eval_stage

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def test_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(n=24):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g))
    return torch.utils.data.DataLoader(data, batch_size=4)


def console_text(stage="test", epochs=3):
    buf = io.StringIO()
    bar = RunProgressBar(leave=True, console_kwargs={"file": buf, "force_terminal": True, "width": 160,
                                                     "color_system": None})
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[bar], logger=False, enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    module = Tiny(stage)
    trainer.fit(module, loader())
    trainer.test(module, loader(8), verbose=False)
    return buf.getvalue(), bar, trainer


def test_the_run_bar_counts_every_batch_of_every_epoch_and_epochs_count_from_1():
    text = console_text()[0]
    assert "Epoch 3/3" in text and "Epoch 0/" not in text and "Epoch 3/2" not in text
    assert "Run" in text and "18/18" in text  # the run bar's batches: 3 epochs of 6


def test_evaluations_are_named_for_what_they_evaluate():
    assert "Testing" in console_text("test", epochs=1)[0]
    text = console_text("train_eval", epochs=1)[0]
    assert "Training split (no augmentation)" in text and "Testing" not in text


def test_the_end_of_a_fit_does_not_wait_for_the_bars_next_redraw():
    """A bar that redraws every 100 s: the refresh thread is stopped at once when the fit ends (Lightning's own
    sleeps out its period first, which at the default rate held every fit and test for up to a second)."""
    bar = RunProgressBar(refresh_rate=0.01, console_kwargs={"file": io.StringIO(), "force_terminal": True})
    trainer = pl.Trainer(max_epochs=1, callbacks=[bar], logger=False, enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    ended = threading.Event()
    threading.Thread(target=lambda: (trainer.fit(Tiny(), loader()), ended.set()), daemon=True).start()
    assert ended.wait(60), "the fit's end waited for the progress bar's next redraw"


class Validated(Tiny):
    """Logs an epoch metric for the bar after each validation, as cnnrun's module logs val/loss and val/acc."""

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        self.log("seen", float(self.current_epoch + 1), prog_bar=True)


def test_the_training_thread_never_draws_the_bars_and_gathers_their_metrics_at_epoch_ends(monkeypatch):
    """Drawing the display is the refresh thread's work: during a fit of 3 epochs of 6 batches, the training thread
    draws it only when the bar starts and when it stops (rich's ``add_task`` and ``reset``, at every epoch's and
    every validation's start, drew it there too); the metrics it shows are gathered at the end of each epoch, after
    its validation, not after every batch, and the last frame shows the last epoch's."""
    from rich.live import Live

    draws, gathered = [], []
    live_refresh, get_metrics = Live.refresh, RunProgressBar.get_metrics
    monkeypatch.setattr(Live, "refresh", lambda live: (draws.append(threading.current_thread()), live_refresh(live)))
    monkeypatch.setattr(RunProgressBar, "get_metrics",
                        lambda bar, trainer, module: (gathered.append(trainer.global_step),
                                                      get_metrics(bar, trainer, module))[1])
    buf = io.StringIO()
    bar = RunProgressBar(refresh_rate=50, console_kwargs={"file": buf, "force_terminal": True, "width": 160,
                                                          "color_system": None})
    trainer = pl.Trainer(max_epochs=3, callbacks=[bar], logger=False, enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(Validated(), loader(), loader(8))
    assert trainer.global_step == 18
    assert draws.count(threading.current_thread()) == 2  # the start and the stop
    assert gathered == [6, 6, 12, 12, 18, 18]  # at the end of each validation and of each epoch, not per batch
    assert "Epoch 3/3" in buf.getvalue() and "seen: 3.000" in buf.getvalue()


def fake_trainer(epoch, epochs=40):
    return SimpleNamespace(current_epoch=epoch, max_epochs=epochs, is_global_zero=True,
                           accelerator=SimpleNamespace())


def hint_after_first_epoch(epoch_s, epochs=40, threshold=300):
    clock = iter([100.0, 100.0 + epoch_s])
    out = io.StringIO()
    hint = LongRunHint(threshold, clock=lambda: next(clock), stream=out)
    hint.on_train_epoch_start(fake_trainer(0, epochs), None)
    hint.on_train_epoch_end(fake_trainer(0, epochs), None)
    return out.getvalue()


def test_a_long_run_gets_one_line_with_the_estimate_and_ways_to_shorten_it():
    line = hint_after_first_epoch(30.0)  # 39 epochs of 30 s left: 19.5 min
    assert line.count("\n") == 1
    assert "about 20 min more on this CPU (30 s per epoch, 40 epochs)" in line
    assert "trainer=gpu" in line and "model.width=0.5" in line and "trainer.max_epochs=10" in line


def test_a_short_run_gets_no_hint_and_the_hint_comes_once():
    assert hint_after_first_epoch(7.0) == ""  # 39 x 7 s = 273 s < 300 s
    assert hint_after_first_epoch(60.0, epochs=1) == ""  # nothing left to estimate
    clock = iter([0.0, 60.0, 60.0, 120.0])
    out = io.StringIO()
    hint = LongRunHint(300, clock=lambda: next(clock), stream=out)
    for epoch in (0, 1):
        hint.on_train_epoch_start(fake_trainer(epoch), None)
        hint.on_train_epoch_end(fake_trainer(epoch), None)
    assert out.getvalue().count("\n") == 1


def test_the_trainer_shows_the_run_bar_and_the_hint_unless_the_bar_is_off(tmp_path):
    from cnnrun.config import compose, to_plain
    from cnnrun.train.trainer import make_trainer

    on = make_trainer(to_plain(compose(["callbacks.progress_bar.refresh_rate=2"])), tmp_path, with_logger=False)
    bars = [c for c in on.callbacks if isinstance(c, RunProgressBar)]
    assert len(bars) == 1 and bars[0].refresh_rate == 2 and any(isinstance(c, LongRunHint) for c in on.callbacks)
    off = make_trainer(to_plain(compose(["callbacks.progress_bar.refresh_rate=0"])), tmp_path, with_logger=False)
    assert not any(isinstance(c, (RunProgressBar, LongRunHint)) for c in off.callbacks)
    assert off.progress_bar_callback is None
