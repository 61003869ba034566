"""Sweep bookkeeping for the CLI: how many jobs of this launch ran and how they ended.

Jobs may run in this process (Hydra's basic launcher), in worker processes (joblib) or on other machines (submitit,
SLURM), so nothing is counted in memory: every job records the launch it belongs to (``launch`` in its
``metrics.json``, from the ``CNNRUN_LAUNCH_ID`` environment variable that the CLI sets and that worker processes
inherit), and the CLI counts the records of its own launch in the sweep folder, which :class:`SweepLedger` (a Hydra
callback in ``conf/hydra/default.yaml``) notes when the sweep starts. Re-running into the same sweep folder (an
Optuna study that resumes) counts only the new jobs. Light module.
"""
from __future__ import annotations

import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

from cnnrun.record import FINISHED_WELL, RECORD_FILE, RunRecord

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - Hydra is a dependency
    Callback = object

LAUNCH_ENV = "CNNRUN_LAUNCH_ID"
_sweep_dirs: list[Path] = []


class SweepLedger(Callback):
    """Notes the sweep folder of each ``-m`` launch in this process (resolved once, as the jobs resolve it)."""

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        _sweep_dirs.append(Path(str(config.hydra.sweep.dir)).absolute())


def start_launch() -> str:
    """A new launch id, exported to every job of this process and its workers."""
    launch = secrets.token_hex(6)
    os.environ[LAUNCH_ENV] = launch
    _sweep_dirs.clear()
    return launch


def current_launch() -> str | None:
    return os.environ.get(LAUNCH_ENV)


def launch_status(launch: str, sweep_dirs: list[Path] | None = None) -> Counter:
    """status -> number of jobs of ``launch`` (completed, failed, diverged, pruned, interrupted), from their run
    records."""
    counts: Counter = Counter()
    for sweep_dir in _sweep_dirs if sweep_dirs is None else sweep_dirs:
        if not sweep_dir.is_dir():
            continue
        for path in sweep_dir.rglob(RECORD_FILE):
            record = RunRecord.read(path.parent)  # an unreadable file has no launch: not counted
            if record.launch == launch:
                counts[record.status] += 1
    return counts


def failed_jobs(counts: Counter) -> int:
    """Jobs that neither completed nor were pruned (pruning is a normal end of an Optuna trial) nor were interrupted
    (stopped by a signal: they resume when the sweep runs again)."""
    return sum(n for status, n in counts.items() if status not in (*FINISHED_WELL, "interrupted"))
