"""``python -m cnnrun``: Hydra's entry point. Heavy modules (torch, Lightning) load only when a job runs."""
from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from cnnrun.config import composition_error, register_resolvers
from cnnrun.errors import one_line

register_resolvers()

_state: dict = {"jobs": 0, "failed": 0, "crash": None}
# Hydra prints its own report of a config error (a YAML syntax error with a page of traceback) unless
# HYDRA_FULL_ERROR=1, when it raises the error instead. cli() sets it, to report the error in one line, and keeps the
# user's own setting in USER_FULL_ERROR, which jobs read (here and in the worker processes that inherit both).
USER_FULL_ERROR = "CNNRUN_USER_HYDRA_FULL_ERROR"


def _full_error() -> bool:
    """Whether the user asked for full tracebacks (HYDRA_FULL_ERROR=1)."""
    return os.environ.get(USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", "")) == "1"


def _error(message: str) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


def _failed(err: Exception, status: int, *, traceback: bool) -> None:
    """A job that failed in a way the user can act on: one line (or the traceback, when asked for); a single run
    exits with ``status``, a sweep goes on with its other jobs (metrics.json records the failure)."""
    _state["failed"] += 1
    if traceback:
        raise err
    _error(str(err))
    if not _multirun():
        sys.exit(status)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="pkg://cnnrun.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One job: run the config; map user errors to 'error: ...' and exit status 2 (1 for a failed run)."""
    from cnnrun.atomic import WriteError
    from cnnrun.errors import ConfigError, Diverged
    from cnnrun.run import run
    from cnnrun.train.pruning import Pruned

    _state["jobs"] += 1
    full_error = _full_error()
    try:
        metrics = run(cfg)
        return metrics.get("val/acc")  # the sweep objective (Optuna and other sweepers)
    except ConfigError as err:
        _failed(err, 2, traceback=full_error)
    except Diverged as err:
        _failed(err, 1, traceback=False)
    except Pruned as err:  # an Optuna trial stopped early by its pruner: recorded as pruned, not a failure
        print(f"job {err}", file=sys.stderr, flush=True)
    except WriteError as err:  # a full disk or an unwritable file: one line naming the file (metrics.json has it)
        _failed(err, 1, traceback=full_error)
    except Exception as err:  # a crash: recorded in metrics.json; a sweep goes on with its other jobs
        _state["failed"] += 1
        if not _multirun() or full_error:
            _state["crash"] = err  # reported with its traceback, never as a config error
            raise
        _error(f"job failed: {type(err).__name__}: {err}")
    return None


def _output_error(err: BaseException):
    """Hydra could not create or write the run (or sweep) folder: a ConfigError naming it, else None."""
    from cnnrun.atomic import unwritable_cause
    from cnnrun.errors import ConfigError

    cause = unwritable_cause(err)
    if cause is None:
        return None
    key = "hydra.sweep.dir" if {"-m", "--multirun"} & set(sys.argv[1:]) else "hydra.run.dir"
    return ConfigError(key, str(cause))


def cli() -> None:
    """Console entry point (``cnnrun ...``), same as ``python -m cnnrun``."""
    from cnnrun.sweep import failed_jobs, launch_status, start_launch

    launch = start_launch()
    os.environ.setdefault(USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", ""))  # a DDP rank keeps its parent's
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except Exception as err:  # raised by Hydra: a config that does not compose, or a job's crash
        error = None if _full_error() or err is _state["crash"] else composition_error(err) or _output_error(err)
        if error is None:
            raise
        _error(str(error))
        sys.exit(2)
    jobs, failed = _state["jobs"], _state["failed"]
    counts = launch_status(launch)  # a sweep's jobs, wherever they ran (worker processes, cluster nodes)
    if counts:
        jobs, failed = sum(counts.values()), failed_jobs(counts)
    if failed:
        print(f"{failed} of {jobs} jobs failed; see their metrics.json", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
