"""Graceful stop: SIGINT (Ctrl-C) and SIGTERM (``kill``, a cluster's time limit) end training at a safe point.

The safe point is the start of the next batch (training, validation or test). The partial epoch is dropped, not
saved: ``checkpoints/last.ckpt`` already holds the last finished epoch (written at its end), and a run resumed from
it repeats the partial epoch with the random streams of that epoch, so it ends as the uninterrupted run would have.
Saving the partial epoch instead would make Lightning skip the rest of that epoch on resume. A second signal stops
at once. Light module: Lightning loads only when the callback is made.
"""
from __future__ import annotations

import functools
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HISTORY_KEY = "history"  # the epochs' metrics in a checkpoint: a resumed run's metrics.json covers every epoch


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM. A KeyboardInterrupt, so that code which catches ``Exception`` lets it
    through, as it would let Ctrl-C through."""

    def __init__(self, signum: int, *, immediate: bool = False):
        self.signum, self.immediate = int(signum), immediate
        # set by run(): the run's folder, its finished epochs, the command that resumes it (None: nothing to resume)
        self.run_dir: str | None = None
        self.epochs_done = 0
        self.resume: str | None = None
        super().__init__(self.signal_name)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130 SIGINT, 143 SIGTERM)."""
        return 128 + self.signum


class _StopNow(Exception):
    """Raised inside Lightning's loops to stop them. An Exception, not a KeyboardInterrupt: Lightning answers a
    KeyboardInterrupt with ``sys.exit(1)``, and re-raises anything else after its own clean-up."""


@dataclass
class StopRequest:
    """The signal received in a :func:`graceful_stop` block, None until one arrives."""

    signum: int | None = None

    def check(self) -> None:
        """Stop here (raise) when a stop was requested: called at the safe points."""
        if self.signum is not None:
            raise _StopNow(signal.Signals(self.signum).name)


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM handlers for the duration of the block; the previous handlers come back after it.

    The first signal only records itself in the yielded :class:`StopRequest` (the block stops at its next
    :meth:`StopRequest.check`); a second one stops the block at once. Whatever ends the block after a signal, the
    block raises :class:`Interrupted`, also when it finished anyway. Outside the main thread, where Python cannot set
    signal handlers, the block runs without them.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    immediate = []

    def handler(signum, frame) -> None:
        if request.signum is not None:  # the second signal: the user does not want to wait
            immediate.append(signum)
            raise _StopNow(signal.Signals(signum).name)
        request.signum = signum

    # A handler that someone else set is theirs to keep: submitit, for one, ignores SIGTERM in a SLURM job so that
    # its own preemption hook (SIGUSR2) requeues the job, which then resumes from last.ckpt.
    ours = [s for s in STOP_SIGNALS if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler, None)]
    previous = {s: signal.signal(s, handler) for s in ours}
    try:
        yield request
    except BaseException as err:
        if request.signum is None:
            raise
        raise Interrupted(request.signum, immediate=bool(immediate)) from err
    finally:
        for s, h in previous.items():  # None: a handler not set from Python; the default is the closest
            signal.signal(s, h if h is not None else signal.SIG_DFL)
    if request.signum is not None:
        raise Interrupted(request.signum)


def resumable(request: StopRequest, *, restore_history: bool):
    """The Lightning callback that makes a run stoppable and resumable: it stops at the start of the next batch
    once ``request`` has a signal, and keeps the epochs' metrics in every checkpoint, which a run resumed in its
    own folder (``restore_history``) takes back, so that its metrics.json covers every epoch."""
    return _resumable_class()(request, restore_history)


@functools.cache
def _resumable_class():
    """Resumable, defined on first use (subclassing imports Lightning)."""
    import pytorch_lightning as pl

    class Resumable(pl.Callback):
        def __init__(self, request: StopRequest, restore_history: bool):
            self.request, self.restore_history = request, restore_history

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.request.check()

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
            self.request.check()

        def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
            self.request.check()

        def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
            checkpoint[HISTORY_KEY] = [dict(h) for h in getattr(pl_module, "history", [])]

        def __reduce__(self):  # picklable (ddp_spawn sends the trainer to its processes) though defined locally
            return functools.partial(resumable, restore_history=self.restore_history), (self.request,)

        def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
            if not self.restore_history:
                return
            _adopt_folder(checkpoint, trainer)
            if trainer.state.fn == "fit":  # not the test's load of best.ckpt, whose history ends at the best epoch
                pl_module.history = [dict(h) for h in checkpoint.get(HISTORY_KEY) or []]

    return Resumable


def _adopt_folder(checkpoint: dict[str, Any], trainer) -> None:
    """A run resumed in its own folder keeps its best epoch even when the folder moved (copied from a cluster, or
    named by another path): Lightning restores a checkpoint callback's best epoch only where its saved folder equals
    the current one, so the saved paths are rewritten to the current folder."""
    current = getattr(trainer.checkpoint_callback, "dirpath", None)
    if current is None:
        return
    for key, state in (checkpoint.get("callbacks") or {}).items():
        saved = state.get("dirpath") if isinstance(state, dict) and key.startswith("BestCheckpoint") else None
        if not saved or saved == current:
            continue

        def moved(path: Any) -> Any:
            return current + path[len(saved):] if isinstance(path, str) and path.startswith(saved) else path

        state["dirpath"] = current
        for name in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if name in state:
                state[name] = moved(state[name])
        if isinstance(state.get("best_k_models"), dict):
            state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
