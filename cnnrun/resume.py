"""Continuing a run in its own folder from its ``checkpoints/last.ckpt``.

Two ways in: ``resume=<run folder>`` continues one interrupted or crashed run with its own saved config
(``config.yaml``; the command line may change only :data:`RESUMABLE_KEYS`, e.g. extend ``trainer.max_epochs``), and
a sweep run again into the same sweep folder continues each job where its folder says it stopped: a completed job
with the same config is skipped, an interrupted or killed one resumes, a failed one runs again. Light module (torch
loads only to read a checkpoint's epoch).
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from cnnrun.errors import ConfigError
from cnnrun.record import FINISHED_WELL, NOT_WRITTEN, RunRecord

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
# What a resumed run may change: how long it trains, and how it shows progress or where it computes; nothing that
# changes the model, the data or the optimisation.
RESUMABLE_KEYS = ("trainer.max_epochs", "trainer.threads", "trainer.accelerator", "trainer.devices",
                  "trainer.enable_progress_bar", "callbacks.progress_bar", "logger.dashboards")
# Keys a run fills in for itself where it starts (the training split's statistics, the job's device), and the resume
# key itself: not part of what two attempts of a job must agree on.
RUNTIME_KEYS = ("resume", "data.stats", "trainer.devices", "trainer.accelerator")
# Schedules whose saved state fixes the number of steps (torch's OneCycleLR): a run with one cannot train longer.
FIXED_LENGTH_SCHEDULES = ("onecycle",)
# What a fresh attempt replaces: a failed attempt's checkpoints and curves would mix with the new ones.
ATTEMPT_FOLDERS = ("checkpoints", "tensorboard", "csv")


def resume_command(run_dir: str | Path) -> str:
    """The command that continues the run in ``run_dir``."""
    return f"python -m cnnrun resume={run_dir}"


@dataclass
class Continuation:
    """What a run does with an earlier attempt in its folder: ``fresh`` (start from scratch), ``resume`` (from
    ``checkpoint``, with ``config``) or ``skip`` (it completed already: ``previous`` is its record)."""

    action: str
    config: dict[str, Any] | None = None
    checkpoint: Path | None = None
    previous: RunRecord = field(default_factory=RunRecord)
    note: str = ""  # one line for the console ("" says nothing)
    epochs_done: int = 0  # the epochs in ``checkpoint``


def resume_folder(value: Any) -> Path:
    """The run folder that ``resume=`` names; a ConfigError naming ``resume`` when it is not one."""
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise ConfigError("resume", f"no run folder at {value}")
    if not (path / "config.yaml").is_file():
        if (path / "multirun.yaml").is_file():
            raise ConfigError("resume", f"{value} is a sweep folder: to finish the sweep, run its -m command again "
                                        f"with hydra.sweep.dir={value}")
        raise ConfigError("resume", f"{value} has no config.yaml: not the folder of a cnnrun run")
    return path


def continue_run(run_dir: Path, plain: dict[str, Any], command: Sequence[str]) -> Continuation:
    """``resume=<run_dir>``: the run's saved config with the command line's changes (``plain`` holds their values,
    ``command`` names them), to train on from its last checkpoint; ``skip`` when it completed and is not extended."""
    saved = _saved_config(run_dir)
    if saved is None:
        raise ConfigError("resume", f"{run_dir / 'config.yaml'} cannot be read")
    if saved.get("mode") != "train":
        raise ConfigError("resume", f"{run_dir} is a mode={saved.get('mode')} run: only training runs resume")
    config = copy.deepcopy(saved)
    for key in _command_keys(command):
        if not _resumable(key):
            raise ConfigError(key, f"cannot change when resuming: the run continues with its own config "
                                   f"({run_dir / 'config.yaml'}); a resume may set only {', '.join(RESUMABLE_KEYS)}")
        _set(config, key, _get(plain, key))
    config["resume"] = None  # config.yaml stays the run's own
    if _fixed_length(saved, config):
        raise ConfigError("trainer.max_epochs", f"cannot grow from {_epochs(saved)}: the run's schedule "
                                                f"(sched={saved['sched']['name']}) spans its {_epochs(saved)} epochs")
    previous = RunRecord.read(run_dir)
    checkpoint = run_dir / LAST_CHECKPOINT
    done = checkpoint_epochs(checkpoint) if checkpoint.is_file() else previous.epochs or 0
    if done > _epochs(config):
        raise ConfigError("trainer.max_epochs", f"is {_epochs(config)}, but {run_dir} has trained {done} epochs "
                                                f"already")
    if previous.status in FINISHED_WELL and _epochs(config) == _epochs(saved):
        return Continuation("skip", previous=previous, note=f"{run_dir}: already {previous.status} after "
                                                            f"{previous.epochs} epochs; nothing to resume")
    if not checkpoint.is_file():
        raise ConfigError("resume", f"{run_dir} has no {LAST_CHECKPOINT} (it stopped before its first epoch "
                                    f"ended): start it again")
    return Continuation("resume", config, checkpoint, previous, f"{run_dir}: resuming after epoch {done}", done)


def continue_job(job_dir: Path, plain: dict[str, Any], job: Any) -> Continuation:
    """A job of a sweep run again into the same sweep folder (``job`` is its number, for the console): ``skip``
    when it completed with the same config, ``resume`` when it was interrupted or killed after an epoch (or completed
    and is now extended), else ``fresh`` (a new job, a failed one, or one whose config changed)."""
    previous = RunRecord.read(job_dir)
    checkpoint = job_dir / LAST_CHECKPOINT
    if previous.status == "unfinished" and not checkpoint.exists():
        return Continuation("fresh", previous=previous)  # a new job, or one killed before its first epoch ended
    saved = _saved_config(job_dir)
    changed = None if saved is None else differing_keys(saved, plain)
    if changed is None or not all(_resumable(k) for k in changed):
        return Continuation("fresh", previous=previous, note=f"job {job}: running again (its config changed)")
    if _fixed_length(saved, plain):
        return Continuation("fresh", previous=previous, note=f"job {job}: running again (more epochs, and "
                                                             f"sched={saved['sched']['name']} cannot be extended)")
    extended = _epochs(plain) > _epochs(saved)
    if previous.status in FINISHED_WELL and not extended:
        if _epochs(plain) == _epochs(saved):
            return Continuation("skip", previous=previous, note=f"job {job}: already {previous.status}, skipped")
        return Continuation("fresh", previous=previous, note=f"job {job}: running again (fewer epochs)")
    if (previous.status in FINISHED_WELL or resumable_status(previous)) and checkpoint.is_file():
        done = checkpoint_epochs(checkpoint)
        if done <= _epochs(plain):
            return Continuation("resume", plain, checkpoint, previous,
                                f"job {job}: resuming after epoch {done} ({previous.status})", done)
    why = previous.error or previous.status
    return Continuation("fresh", previous=previous, note=f"job {job}: running again ({why})")


def resumable_status(record: RunRecord) -> bool:
    """An attempt that was stopped rather than failed: interrupted, killed (no readable metrics.json), or recorded
    by an older cnnrun as failed with the interruption's SystemExit or KeyboardInterrupt."""
    error = record.error or ""
    return record.status in ("interrupted", *NOT_WRITTEN) or (
        record.status == "failed" and error.startswith(("SystemExit", "KeyboardInterrupt")))


def clear_attempt(run_dir: Path) -> None:
    """Remove what an earlier attempt trained (checkpoints and curves) before the folder is trained again."""
    for name in ATTEMPT_FOLDERS:
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)


def checkpoint_epochs(path: Path) -> int:
    """The epochs a Lightning checkpoint has finished."""
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1


def differing_keys(saved: dict[str, Any], plain: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two resolved configs (lists compare whole), leaving out
    :data:`RUNTIME_KEYS`. Both sides go through YAML, as config.yaml did, so that only real differences count."""
    a, b = _flat(_as_saved(saved)), _flat(_as_saved(plain))
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, _ABSENT) != b.get(k, _ABSENT))
    return [k for k in keys if not any(_under(k, r) for r in RUNTIME_KEYS)]


# -- helpers --------------------------------------------------------------------------------------------------------
_ABSENT = object()


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def _as_saved(plain: dict[str, Any]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return yaml.safe_load(OmegaConf.to_yaml(OmegaConf.create(plain)))


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict) or (prefix and not node):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _under(key: str, parent: str) -> bool:
    return key == parent or key.startswith(parent + ".")


def _resumable(key: str) -> bool:
    return any(_under(key, k) for k in RESUMABLE_KEYS)


def _command_keys(command: Sequence[str]) -> list[str]:
    """The keys the command line sets, without ``resume`` itself and Hydra's own settings."""
    keys = [str(o).lstrip("+~").split("=", 1)[0] for o in command]
    return [k for k in keys if k != "resume" and not _under(k, "hydra")]


def _get(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = copy.deepcopy(value)


def _epochs(config: dict[str, Any]) -> int:
    return int(_get(config, "trainer.max_epochs") or 0)


def _fixed_length(saved: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether ``config`` trains longer than ``saved`` with a schedule that cannot (:data:`FIXED_LENGTH_SCHEDULES`)."""
    return _epochs(config) > _epochs(saved) and _get(saved, "sched.name") in FIXED_LENGTH_SCHEDULES
