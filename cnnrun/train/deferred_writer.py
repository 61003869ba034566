"""Dashboard pictures encoded and written beside training, not in its way.

The dashboards hand TensorBoard's SummaryWriter ready pictures and histogram counts; encoding a picture (PNG) and
building its event takes 1-4 ms on a 2-core CPU (the periodic filters, feature maps and histograms of the default job:
about 1% of its epochs), and the test's figures 10-15 ms each. Where a core is left for it
(:func:`cnnrun.train.trainer.writer_thread_pays`, as for checkpoints), :class:`DeferredWriter` does that on one writer
thread while training goes on:

- the events are written in the order they were made, each with the time it was made (``walltime``);
- what is handed over is the dashboards' own new arrays and numbers, which training does not change;
- :meth:`DeferredWriter.wait` finishes every pending write and raises the first failure on the training thread; the
  dashboards call it at the end of every fit and test (their ``teardown``, just before Lightning closes the loggers)
  and on an exception, so the event files are complete when they close.

Elsewhere (torch's threads on every core, where a writer thread would take turns with threads that spin-wait) the
writes happen in place, as SummaryWriter makes them.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class DeferredWriter:
    """A SummaryWriter whose ``add_image``, ``add_histogram_raw`` and ``add_text`` run on a writer thread when
    ``background``; every other attribute is the writer's own (``flush`` waits for the pending writes first)."""

    def __init__(self, writer: Any, background: bool):
        self.writer = writer
        self.background = background
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def _submit(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not self.background:
            method(*args, **kwargs)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnrun-dashboards")
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        self._pending.append(self._pool.submit(method, *args, walltime=time.time(), **kwargs))

    def add_image(self, tag: str, image: Any, global_step: int) -> None:
        self._submit(self.writer.add_image, tag, image, global_step)

    def add_histogram_raw(self, tag: str, **kwargs: Any) -> None:
        self._submit(self.writer.add_histogram_raw, tag, **kwargs)

    def add_text(self, tag: str, text: str, global_step: int) -> None:
        self._submit(self.writer.add_text, tag, text, global_step)

    def wait(self, close: bool = True) -> None:
        """Finish every pending write (and, with ``close``, let the writer thread go: the next write starts another);
        raises the first write that failed."""
        pending, self._pending = self._pending, []
        try:
            for future in pending:
                future.result()
        finally:
            if close and self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def flush(self) -> None:
        self.wait(close=False)
        self.writer.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)
