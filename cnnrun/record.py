"""The run record: the fields of a run folder's ``metrics.json``, as one type with one writer and one reader.

``run()``, training, the gallery and the Optuna sweeper fill a :class:`RunRecord`; the report, the sweep bookkeeping
and the Optuna sweeper read it back with :meth:`RunRecord.read`, which accepts any ``metrics.json`` (older files,
files with keys it does not know, a half-finished folder). ``metrics.json`` keeps its JSON layout: the fields below,
in this order; the core fields (status to method) always appear, the others only when they were set. Light module.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnrun.runfiles import write_json

RECORD_FILE = "metrics.json"
# How a run ended: completed, failed, diverged, pruned or interrupted (by SIGINT or SIGTERM: it can be resumed); a
# record without a status reads as unknown. unfinished and unreadable are never written: they describe a folder whose
# metrics.json is missing (the job is running or was killed) or cannot be parsed.
NOT_WRITTEN = ("unfinished", "unreadable")
FINISHED_WELL = ("completed", "pruned")  # pruned: an Optuna pruner's normal end of a trial


@dataclass
class RunRecord:
    """One run, as ``metrics.json`` records it."""

    # -- core: always written (null when unknown) ---------------------------------------------------------------
    status: str = "unknown"  # completed, failed, diverged, pruned, interrupted (see NOT_WRITTEN for the others)
    error: str | None = None  # one line for failed, diverged and interrupted runs
    metrics: dict[str, float] = field(default_factory=dict)  # final metrics (test/acc, gap, ...)
    params: int | None = None  # trainable and frozen parameters of the model
    duration_s: float | None = None
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides
    seed: Any = None
    mode: str | None = None  # train, test, summary, gallery
    run_dir: str | None = None
    started_at: str | None = None  # local time, ISO 8601 to the second
    host: str | None = None
    launch: str | None = None  # the CLI launch this job belongs to (cnnrun.sweep)
    method: str | None = None  # the generalization methods (augment+weight_decay), None when none is chosen
    # -- written only when set ----------------------------------------------------------------------------------
    resources: dict[str, Any] | None = None  # threads, cores, parallel jobs, devices, accelerator
    data_sizes: dict[str, int] | None = None  # train/val/test split sizes
    class_counts: dict[str, list[int]] | None = None  # per split
    fit_s: float | None = None
    time_to_first_step_s: float | None = None
    best_checkpoint: str | None = None
    selected: dict[str, Any] | None = None  # the tested epoch and why it was kept
    best_val_acc: float | None = None
    distributed: dict[str, Any] | None = None  # each process's share of the training split
    epochs: int | None = None  # epochs trained in this run
    history: list[dict[str, Any]] | None = None  # one entry of epoch metrics per epoch
    diverged_at: dict[str, Any] | None = None  # epoch and step of a NaN or infinite loss
    pruned_at: dict[str, Any] | None = None  # epoch and val/acc where an Optuna pruner stopped the trial
    interrupted_at: dict[str, Any] | None = None  # the signal, the epochs done, the command that resumes the run
    resumed: list[dict[str, Any]] | None = None  # each continuation of the run in its folder: from which epoch, when
    traceback: str | None = None  # of a crash
    gallery: str | None = None  # the picture of mode=gallery
    # keys of the file that this version does not know: kept, and written back as they were
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as ``metrics.json``'s mapping: the core fields, then the others that are set, then ``extra``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in CORE or value is not None:
                out[f.name] = value
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecord":
        """The record of a parsed ``metrics.json``; missing keys take their defaults, unknown keys go to ``extra``."""
        known = {k: v for k, v in data.items() if k in FIELDS}
        record = cls(**known, extra={k: v for k, v in data.items() if k not in FIELDS})
        if "status" not in data or not isinstance(record.status, str):
            record.status = "unknown"
        # hand-written or older files may hold null (or nonsense) where lists and mappings belong
        record.metrics = dict(record.metrics) if isinstance(record.metrics, dict) else {}
        record.overrides = [str(o) for o in record.overrides] if isinstance(record.overrides, list) else []
        return record

    def write(self, run_dir: str | os.PathLike) -> Path:
        """Write ``<run_dir>/metrics.json`` (atomically, rank 0 only); returns its path."""
        path = Path(run_dir) / RECORD_FILE
        write_json(path, self.to_json())
        return path

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> "RunRecord":
        """The record in ``run_dir``. Never raises: a folder without ``metrics.json`` reads as ``unfinished``, a file
        that cannot be read or parsed as ``unreadable``, each with an ``error`` that says so."""
        path = Path(run_dir) / RECORD_FILE
        if not path.exists():
            return cls(status="unfinished", error=f"no {RECORD_FILE}: the job is running or was killed")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return cls(status="unreadable", error=f"{RECORD_FILE}: {err}")
        if not isinstance(data, dict):
            return cls(status="unreadable", error=f"{RECORD_FILE}: not a mapping")
        return cls.from_json(data)

    @property
    def written(self) -> bool:
        """Whether the run wrote this record (False for a folder without a readable metrics.json)."""
        return self.status not in NOT_WRITTEN


FIELDS = {f.name for f in dataclasses.fields(RunRecord)} - {"extra"}
CORE = ("status", "error", "metrics", "params", "duration_s", "overrides", "seed", "mode", "run_dir", "started_at",
        "host", "launch", "method")


def started_with(run_dir: Path, record: RunRecord) -> list[str]:
    """The command-line overrides a run was started with: its record's, else Hydra's ``.hydra/overrides.yaml`` (a
    job killed before it wrote ``metrics.json``); none when neither can be read."""
    if record.overrides:
        return list(record.overrides)
    import yaml

    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        loaded = None
    return [str(o) for o in loaded] if isinstance(loaded, list) else []
