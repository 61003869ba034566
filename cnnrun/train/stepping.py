"""The optimisation step, taken by cnnrun through Lightning's manual optimisation.

Lightning's automatic optimisation wraps every step in a closure and dispatches about a dozen hooks to every callback
and to the module, most of which do nothing. A LeNet-5 step on 32 digits takes about 3 ms on a 2-core CPU, and that
dispatch added 10-15% to it (``benchmarks/overhead.py``). The :class:`Stepper` takes the same step:

- On one device, with 32-bit or bf16-mixed precision (no gradient scaler), no profiler and no ``backward``
  override (the *lean* path), it calls ``loss.backward()`` and ``optimizer.step()`` itself. It dispatches
  ``on_before_backward``, ``on_after_backward``, ``on_before_optimizer_step`` and ``on_before_zero_grad`` only to the
  callbacks and the module that override them, in Lightning's order (callbacks first, then the module).
- Elsewhere (DDP and the other strategies, fp16 with its gradient scaler, a profiler) it goes through Lightning's
  ``manual_backward`` and ``LightningOptimizer.step``, which do the strategy's and the precision plugin's work.

Both paths do what Lightning's automatic optimisation does with the same Trainer settings: the loss is divided by
``trainer.accumulate_grad_batches`` and the optimizer steps once per that many batches (and on the epoch's last
batch); gradients are zeroed before the first backward of each such window; under DDP (any parallel strategy)
the backward passes inside a window skip the gradient all-reduce (``strategy.block_backward_sync``, DDP's
``no_sync``) and the window's last one reduces the summed gradients once; ``trainer.gradient_clip_val`` (with
``gradient_clip_algorithm``) clips after ``on_before_optimizer_step`` (after the gradient scaler's unscale); the
learning-rate schedule steps after each optimizer step (``interval: step``, after ``on_train_batch_end``) or after
each epoch; ``trainer.global_step`` counts optimizer steps.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from functools import partial
from typing import Any, Callable

import pytorch_lightning as pl
import torch


# Trainer settings the Stepper applies (Lightning refuses them with manual optimisation, so they are not passed on).
STEP_KEYS = ("gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches")
HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")


def stepping_batches(trainer: pl.Trainer, accumulate: int) -> int:
    """Optimizer steps of the whole fit (Trainer.estimated_stepping_batches with the accumulation applied here)."""
    total = trainer.estimated_stepping_batches  # batches per epoch x epochs (capped by max_steps): accumulation 1
    batches = trainer.num_training_batches
    if accumulate > 1 and math.isfinite(batches) and trainer.max_epochs and trainer.max_epochs > 0:
        total = math.ceil(batches / accumulate) * trainer.max_epochs
        if trainer.max_steps >= 0:
            total = min(total, trainer.max_steps)
    return max(int(total), 1)


def lean_possible(trainer: pl.Trainer, module: pl.LightningModule) -> bool:
    """Whether Lightning's manual_backward and LightningOptimizer.step would only add hook dispatch here."""
    from pytorch_lightning.plugins.precision import MixedPrecision, Precision
    from pytorch_lightning.profilers import PassThroughProfiler
    from pytorch_lightning.strategies import SingleDeviceStrategy
    from pytorch_lightning.utilities.model_helpers import is_overridden

    plugin = trainer.precision_plugin
    plain_precision = type(plugin) is Precision or (type(plugin) is MixedPrecision and plugin.scaler is None)
    return (type(trainer.strategy) is SingleDeviceStrategy and plain_precision
            and type(trainer.profiler) is PassThroughProfiler
            and not is_overridden("backward", module, pl.LightningModule))


class Stepper:
    """The optimisation of one fit: built by the module when training starts, called from its training_step."""

    def __init__(self, module: pl.LightningModule, *, clip_val: float | None = None, clip_algorithm: str | None = None,
                 accumulate: int = 1, interval: str | None = None, lean: bool | None = None):
        trainer = module.trainer
        self.module, self.trainer = module, trainer
        self.optimizer = module.optimizers()  # Lightning's wrapper: it counts the steps (trainer.global_step)
        self.raw = self.optimizer.optimizer
        schedulers = module.lr_schedulers()
        self.schedulers = [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]
        self.interval = interval
        self.clip_val, self.clip_algorithm = clip_val or None, clip_algorithm or "norm"
        self.accumulate = accumulate
        self.lean = lean_possible(trainer, module) if lean is None else lean
        self.parallel = isinstance(trainer.strategy, pl.strategies.ParallelStrategy)  # DDP and its kin
        self.listeners = {name: self._listeners(name) for name in HOOKS}
        self.stepped = False
        self.started_at: float | None = None  # time.time() at the first training step (its backward)

    def _listeners(self, name: str) -> list[Callable[..., Any]]:
        """The callbacks' and the module's implementations of hook ``name``, in Lightning's order."""
        from pytorch_lightning.utilities.model_helpers import is_overridden

        found: list[Callable[..., Any]] = [partial(getattr(cb, name), self.trainer, self.module)
                                           for cb in self.trainer.callbacks if is_overridden(name, cb, pl.Callback)]
        if is_overridden(name, self.module, pl.LightningModule):
            found.append(getattr(self.module, name))
        return found

    def _dispatch(self, name: str, *args: Any) -> None:
        for fn in self.listeners[name]:
            fn(*args)

    def step(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Backward for this batch; the optimizer step when the accumulation window closes."""
        if self.started_at is None:
            self.started_at = time.time()
        n = self.accumulate
        if batch_idx % n == 0:
            self._dispatch("on_before_zero_grad", self.raw)
            self.raw.zero_grad(set_to_none=True)
        if n > 1:
            loss = loss / n
        closes = self.closes_window(batch_idx)
        if self.lean:
            self._dispatch("on_before_backward", loss)
            loss.backward()
            self._dispatch("on_after_backward")
        else:
            with self._sync_only_if(closes):
                self.module.manual_backward(loss)
        if not closes:
            return
        if self.lean:
            self.optimizer._on_before_step()  # the manual loop's step counter (trainer.global_step)
            self._dispatch("on_before_optimizer_step", self.raw)  # the module's hook clips
            self.raw.step()
            self.optimizer._on_after_step()
        else:
            self.optimizer.step()  # the precision plugin unscales, then calls on_before_optimizer_step
        self.stepped = True

    def closes_window(self, batch_idx: int) -> bool:
        """Whether this batch's backward ends an accumulation window (the optimizer steps after it)."""
        return (batch_idx + 1) % self.accumulate == 0 or batch_idx + 1 == self.trainer.num_training_batches

    def _sync_only_if(self, closes: bool):
        """A parallel strategy reduces gradients on every backward; inside a window that would be wasted
        communication, as the window's last backward reduces the summed gradients anyway (Lightning's automatic loop
        blocks it the same way)."""
        return nullcontext() if closes or not self.parallel else self.trainer.strategy.block_backward_sync()

    def clip(self) -> None:
        """trainer.gradient_clip_val: called from the module's on_before_optimizer_step, as Lightning clips."""
        if self.clip_val:
            self.module.clip_gradients(self.raw, gradient_clip_val=self.clip_val,
                                       gradient_clip_algorithm=self.clip_algorithm)

    def after_batch(self) -> None:
        """A per-step schedule steps after each optimizer step (from the module's on_train_batch_end)."""
        if self.stepped and self.interval == "step":
            for scheduler in self.schedulers:
                scheduler.step()
        self.stepped = False

    def after_epoch(self) -> None:
        if self.interval == "epoch":
            for scheduler in self.schedulers:
                scheduler.step()
