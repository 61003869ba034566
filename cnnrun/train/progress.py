"""What the console shows while a run trains: the whole run's progress and time left (not only the epoch's), each
evaluation named for what it is, and one line before a long run with the usual ways to shorten it."""
from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.utilities.imports import _IS_INTERACTIVE
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress import rich_progress

# A run whose first epoch says it will take longer than this (seconds) gets the one-line hint.
LONG_RUN_S = 300.0
EVALUATIONS = {"test": "Testing", "train_eval": "Training split (no augmentation)"}


class _PromptRefreshThread(rich_progress._RefreshThread):
    """Lightning's refresh thread sleeps ``1 / refresh_rate`` seconds between redraws, and stopping the bar joins it:
    the end of every fit and every test waited out the sleep (up to a second, about 2.7 s of each default job). This
    one waits on its stop event instead, as rich's own refresh thread does, and so ends as soon as it is told."""

    def run(self) -> None:
        while not self.done.wait(1 / self.refresh_per_second):
            if self.refresh_cond:
                with self.live._lock:
                    self.live.refresh()
                self.refresh_cond = False


class _DeferredProgress(rich_progress.CustomProgress):
    """Lightning's progress display, whose ``refresh`` (which rich's ``add_task`` and ``reset`` call, at every epoch's
    start and every validation's) asks the refresh thread for the next redraw instead of drawing the whole display on
    the training thread: about 3 ms a draw for cnnrun's four bars on a 2-core CPU. In a notebook, and before the
    thread runs, it draws at once as before."""

    def refresh(self) -> None:
        thread = self.live._refresh_thread
        if not _IS_INTERACTIVE and isinstance(thread, rich_progress._RefreshThread) and thread.is_alive():
            thread.refresh_cond = True
        else:
            super().refresh()


class RunProgressBar(RichProgressBar):
    """Lightning's rich progress bar with a second bar for the whole run: every training batch of every epoch, with
    the time elapsed and left; epochs counted from 1, as the dashboards and reports count them. Stopping it (the end
    of a fit or a test) does not wait for its next redraw, and the training thread never draws it: the refresh
    thread does, ``refresh_rate`` times a second.

    Per training batch it moves the two bars and nothing else. Lightning's bar also gathers the logged metrics after
    every batch, but cnnrun logs its metrics once an epoch (``cnnrun.train.module``), so the bar gathers them at the
    end of each training epoch (after its validation) and each evaluation, as Lightning's does then too; that was
    about 0.1 ms a batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_progress_bar_id = None
        self._evaluation = "test"

    def _init_progress(self, trainer: pl.Trainer) -> None:
        # Lightning's progress display starts the refresh thread class it finds in its module: ours, for this call
        # and the progress class (ours, whose refresh leaves the drawing to that thread)
        lightning_thread, lightning_progress = rich_progress._RefreshThread, rich_progress.CustomProgress
        rich_progress._RefreshThread, rich_progress.CustomProgress = _PromptRefreshThread, _DeferredProgress
        try:
            super()._init_progress(trainer)
        finally:
            rich_progress._RefreshThread, rich_progress.CustomProgress = lightning_thread, lightning_progress

    def _get_train_description(self, current_epoch: int) -> str:
        total = self.trainer.max_epochs
        text = f"Epoch {current_epoch + 1}" + (f"/{total}" if total is not None and total > 0 else "")
        return f"{text:{len(self.validation_description)}}"

    def _run_total(self, trainer: pl.Trainer) -> float:
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        return float(self.total_train_batches) * epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        if self.progress is None or self.is_disabled:
            return
        if self.run_progress_bar_id is None or self.run_progress_bar_id not in self.progress.task_ids:
            label = f"{'Run':{len(self.validation_description)}}"
            self.run_progress_bar_id = self._add_task(self._run_total(trainer), label)
        self._update_run(trainer, 0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Lightning's, without gathering the metrics (see the class's doc)
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()  # a run resumed in the middle of an epoch
        self._update(self.train_progress_bar_id, batch_idx + 1)
        self._update_run(trainer, batch_idx + 1)
        self.refresh()

    def _update_run(self, trainer: pl.Trainer, batches_done: int) -> None:
        if self.progress is None or self.run_progress_bar_id is None:
            return
        done = trainer.current_epoch * float(self.total_train_batches) + batches_done
        self.progress.update(self.run_progress_bar_id, total=self._run_total(trainer), completed=done)

    def _reset_progress_bar_ids(self) -> None:
        super()._reset_progress_bar_ids()
        self.run_progress_bar_id = None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation = getattr(pl_module, "eval_stage", "test")
        super().on_test_start(trainer, pl_module)

    @property
    def test_description(self) -> str:
        return EVALUATIONS.get(self._evaluation, "Testing")


class LongRunHint(pl.Callback):
    """After the first epoch: when the run will take longer than ``threshold_s``, one line with the estimate and the
    usual ways to shorten it."""

    def __init__(self, threshold_s: float = LONG_RUN_S, clock=time.monotonic, stream=None) -> None:
        self.threshold_s, self.clock, self.stream = threshold_s, clock, stream
        self._started: float | None = None
        self._measured = False  # the first epoch this process trains (a resumed run's too) is the measure

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._measured:
            self._started = self.clock()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._measured or self._started is None or not trainer.is_global_zero:
            return
        self._measured = True
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        if epochs is None or trainer.current_epoch + 1 >= epochs:
            return
        epoch_s = self.clock() - self._started  # training and validation of one epoch
        left = epoch_s * (epochs - trainer.current_epoch - 1)
        if left < self.threshold_s:
            return
        device = "GPU" if trainer.accelerator.__class__.__name__.startswith("CUDA") else "CPU"
        shorter = max(1, int(self.threshold_s / max(epoch_s, 1e-9)))
        ways = ["trainer=gpu on a machine with a GPU"] if device == "CPU" else []
        ways += ["model.width=0.5 (a narrower model)", f"trainer.max_epochs={shorter}"]
        print(f"this run will take about {_duration(left)} more on this {device} ({epoch_s:.0f} s per epoch, "
              f"{epochs} epochs); to shorten it: {', '.join(ways)}", file=self.stream or sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"
