"""``python -m cnnrun``: Hydra's entry point. Heavy modules (torch, Lightning) load only when a job runs."""
from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import hydra
from omegaconf import DictConfig

from cnnrun.config import composition_error, register_with_hydra
from cnnrun.errors import one_line

register_with_hydra()

_state: dict = {"jobs": 0, "failed": 0, "crash": None, "cli_pid": None}
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
    from cnnrun.train.interrupt import Interrupted
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
    except Interrupted as err:  # SIGINT or SIGTERM: metrics.json says interrupted
        _interrupted(err)
    except Exception as err:  # a crash: recorded in metrics.json; a sweep goes on with its other jobs
        _state["failed"] += 1
        if not _multirun() or full_error:
            _state["crash"] = err  # reported with its traceback, never as a config error
            raise
        _error(f"job failed: {type(err).__name__}: {err}")
    return None


def _interrupted(err) -> None:
    """A job stopped by SIGINT or SIGTERM: one line saying how to continue it, and exit status 128 + the signal's
    number (130, 143). A sweep whose jobs run in this process (Hydra's basic launcher) stops with it: no further job
    starts, and its report, which Hydra would bring up to date after the job, is written here. A job in a worker
    process (joblib, submitit) only ends: its launcher's process decides about the sweep."""
    from cnnrun.report.callback import finish_sweep

    done = f"interrupted ({err.signal_name}) after {err.epochs_done} epoch{'s' if err.epochs_done != 1 else ''}"
    if _multirun():
        from hydra.core.hydra_config import HydraConfig

        sweep_dir = Path(HydraConfig.get().sweep.dir).absolute()
        print(f"{done}; to finish the sweep, run the same command again with hydra.sweep.dir={sweep_dir}",
              file=sys.stderr, flush=True)
        if _state["cli_pid"] != os.getpid():
            return
        finish_sweep(sweep_dir)
    else:
        how = f"resume with: {err.resume}" if err.resume else "nothing to resume (no epoch had finished)"
        print(f"{done}; {how}", file=sys.stderr, flush=True)
    sys.exit(err.exit_status)


def _resume_in_place(argv: list[str]) -> list[str]:
    """``resume=<run folder>``: the run continues in its own folder, so that folder is Hydra's run folder (no new
    one under outputs/), and Hydra keeps its record of the command that started the run (``.hydra/`` is not
    rewritten). A ConfigError naming ``resume`` for a folder that is not a run's, or for a sweep."""
    from cnnrun.errors import ConfigError
    from cnnrun.resume import resume_folder

    values = [a.split("=", 1)[1] for a in argv[1:] if a.lstrip("+~").startswith("resume=")]
    if not values or values[-1] in ("", "null"):
        return argv
    if {"-m", "--multirun"} & set(argv[1:]):
        raise ConfigError("resume", "continues one run; to finish a sweep, run its -m command again with the same "
                                    "hydra.sweep.dir")
    if any(a.startswith(("hydra.run.dir=", "hydra.output_subdir=")) for a in argv[1:]):
        raise ConfigError("resume", "a run resumes in its own folder: leave out hydra.run.dir")
    resume_folder(values[-1])
    return [*argv, f"hydra.run.dir={values[-1]}", "hydra.output_subdir=null"]


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
    try:
        _cli()
    except SystemExit as err:
        _exit_now(err.code)
    _exit_now(0)


def _exit_now(code: Any) -> NoReturn:
    """End the process without the interpreter's teardown of every module: with torch and Lightning loaded it takes
    about a second (measured on a 2-core VM: 1.0-1.4 s, most of it freeing their native libraries), when everything
    the command writes is complete. What a normal exit does before that teardown is done here too: the other
    (non-daemon) threads are waited for, the ``atexit`` handlers run (logging's flush and Hydra's among them), and the
    standard streams are flushed. A traceback (any other exception) still takes the normal way out."""
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"), as Python itself reports it
        print(code, file=sys.stderr)
        code = 1
    # the interpreter's own calls at exit, in its order: threading's exit hooks (a joblib pool's shutdown among them),
    # then waiting for the non-daemon threads; then the atexit handlers
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cli() -> None:
    from cnnrun.errors import ConfigError
    from cnnrun.sweep import failed_jobs, launch_status, start_launch

    launch = start_launch()
    _state["cli_pid"] = os.getpid()  # where the jobs of Hydra's basic launcher run
    os.environ.setdefault(USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", ""))  # a DDP rank keeps its parent's
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        sys.argv = _resume_in_place(sys.argv)
    except ConfigError as err:
        _error(str(err))
        sys.exit(2)
    try:
        main()
    except KeyboardInterrupt:  # outside a job (a sweep's launcher waiting for its workers): what finished is kept
        print("interrupted; run the same command again to finish what was left", file=sys.stderr, flush=True)
        sys.exit(130)
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
    if counts.get("interrupted"):  # in worker processes (a job in this process ends the sweep at once)
        print(f"{counts['interrupted']} of {jobs} jobs interrupted; to finish them, run the same command again with "
              f"the same hydra.sweep.dir", file=sys.stderr)
        sys.exit(130)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    cli()
