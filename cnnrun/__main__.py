"""``python -m cnnrun``: Hydra's entry point. Heavy modules (torch, Lightning) load only when a job runs."""
from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from cnnrun.config import register_resolvers

register_resolvers()

_state = {"jobs": 0, "failed": 0}


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="pkg://cnnrun.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One job: run the config; map user errors to 'error: ...' and exit status 2 (1 for a failed run)."""
    from cnnrun.errors import ConfigError, Diverged
    from cnnrun.run import run
    from cnnrun.train.pruning import Pruned

    _state["jobs"] += 1
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        metrics = run(cfg)
        return metrics.get("val/acc")  # the sweep objective (Optuna and other sweepers)
    except ConfigError as err:
        _state["failed"] += 1
        if full_error:
            raise
        _error(str(err))
        if not _multirun():
            sys.exit(2)
    except Diverged as err:
        _state["failed"] += 1
        _error(str(err))
        if not _multirun():
            sys.exit(1)
    except Pruned as err:  # an Optuna trial stopped early by its pruner: recorded as pruned, not a failure
        print(f"job {err}", file=sys.stderr, flush=True)
    except Exception as err:  # a crash: recorded in metrics.json; a sweep goes on with its other jobs
        _state["failed"] += 1
        if not _multirun() or full_error:
            raise
        _error(f"job failed: {type(err).__name__}: {err}")
    return None


def cli() -> None:
    """Console entry point (``cnnrun ...``), same as ``python -m cnnrun``."""
    from cnnrun.sweep import failed_jobs, launch_status, start_launch

    launch = start_launch()
    try:
        main()
    except SystemExit as exc:
        # Hydra reports its own config errors (unknown group option, bad override) with status 1 before any
        # job starts: those are user errors too.
        if exc.code == 1 and _state["jobs"] == 0 and not launch_status(launch):
            sys.exit(2)
        raise
    jobs, failed = _state["jobs"], _state["failed"]
    counts = launch_status(launch)  # a sweep's jobs, wherever they ran (worker processes, cluster nodes)
    if counts:
        jobs, failed = sum(counts.values()), failed_jobs(counts)
    if failed:
        print(f"{failed} of {jobs} jobs failed; see their metrics.json", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
