"""The Trainer factory: pl.Trainer from the ``trainer``, ``callbacks`` and ``logger`` config groups."""
from __future__ import annotations

import functools
import logging
import math
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

from cnnrun.errors import ConfigError, did_you_mean

# Keys of the trainer group that cnnrun resolves itself (not passed to pytorch_lightning.Trainer).
OWN_KEYS = ("threads", "channels_last", "compile")
# Lightning's Trainer arguments that cnnrun sets itself (from the callbacks/ and logger/ groups, the run folder)
SET_BY_CNNRUN = ("callbacks", "logger", "default_root_dir", "enable_checkpointing")
COMPILE_KEYS = ("fullgraph", "dynamic", "backend", "mode", "options", "disable")
# What the best checkpoint and early stopping may monitor: validation metrics, measured on data the model does not
# train on (train/* would select the most overfitted epoch).
MONITORS = ("val/acc", "val/loss")


def check_trainer_config(trainer_cfg: dict[str, Any]) -> None:
    """Unknown Trainer arguments, non-positive epoch counts and bad thread counts are config errors (checked without
    importing Lightning: the trainer schema lists its arguments, and tests/test_schema.py holds the list to
    Lightning's)."""
    import dataclasses

    from cnnrun.schema import Trainer

    for key in SET_BY_CNNRUN:
        if key in trainer_cfg:
            raise ConfigError(f"trainer.{key}", "is set by cnnrun from the callbacks/ and logger/ groups and the "
                                                "run folder; configure it there")
    accepted = [f.name for f in dataclasses.fields(Trainer)]
    for key in trainer_cfg:
        if key not in accepted:
            raise ConfigError(f"trainer.{key}", f"is not an argument of pytorch_lightning.Trainer"
                                                f"{did_you_mean(key, accepted)}")
    threads = trainer_cfg["threads"]
    if not (threads is None or threads == "auto" or (isinstance(threads, int) and not isinstance(threads, bool)
                                                     and threads >= 1)):
        raise ConfigError("trainer.threads", f"must be auto or a positive integer, got {threads!r}")
    if not isinstance(trainer_cfg["channels_last"], bool):
        raise ConfigError("trainer.channels_last", f"must be true or false, got {trainer_cfg['channels_last']!r}")
    compile_cfg = trainer_cfg["compile"]
    if isinstance(compile_cfg, dict):
        for key in compile_cfg:
            if key not in COMPILE_KEYS:
                raise ConfigError(f"trainer.compile.{key}", f"is not an argument of torch.compile"
                                                            f"{did_you_mean(key, COMPILE_KEYS)} (known: "
                                                            f"{', '.join(COMPILE_KEYS)})")
    elif not isinstance(compile_cfg, bool):
        raise ConfigError("trainer.compile", f"must be true, false or a mapping of torch.compile arguments, got "
                                             f"{compile_cfg!r}")
    check_strategy(trainer_cfg["strategy"])
    _check_step_config(trainer_cfg)
    epochs = trainer_cfg["max_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError("trainer.max_epochs", f"must be a positive integer, got {epochs!r}")


def _check_step_config(trainer_cfg: dict[str, Any]) -> None:
    """The settings of cnnrun's optimisation step (:mod:`cnnrun.train.stepping`): clipping and accumulation."""
    clip = trainer_cfg["gradient_clip_val"]
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0):
        raise ConfigError("trainer.gradient_clip_val", f"must be null or a non-negative number, got {clip!r}")
    algorithm = trainer_cfg["gradient_clip_algorithm"]
    if algorithm not in ("norm", "value"):
        raise ConfigError("trainer.gradient_clip_algorithm", f"must be norm or value, got {algorithm!r}")
    n = trainer_cfg["accumulate_grad_batches"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("trainer.accumulate_grad_batches", f"must be a positive integer, got {n!r}")


def check_callbacks_config(cb_cfg: dict[str, Any]) -> None:
    """The best checkpoint's monitor and tie-break and early stopping's monitor are validation metrics, their modes
    min or max; patience and min_delta are not negative."""
    ckpt = cb_cfg["checkpoint"]
    _check_monitor("callbacks.checkpoint", ckpt["monitor"], ckpt["mode"])
    if ckpt["tie_break"] is not None:
        _check_monitor("callbacks.checkpoint", ckpt["tie_break"], ckpt["tie_break_mode"],
                       keys=("tie_break", "tie_break_mode"))
    early = cb_cfg["early_stopping"]
    if early["enabled"]:
        _check_monitor("callbacks.early_stopping", early["monitor"], early["mode"])
        patience = early["patience"]
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ConfigError("callbacks.early_stopping.patience", f"must be a non-negative integer (epochs), got "
                                                                   f"{patience!r}")
        delta = early["min_delta"]
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta < 0:
            raise ConfigError("callbacks.early_stopping.min_delta", f"must be a non-negative number, got {delta!r}")


def _check_monitor(prefix: str, monitor: Any, mode: Any, keys: tuple[str, str] = ("monitor", "mode")) -> None:
    if monitor not in MONITORS:
        raise ConfigError(f"{prefix}.{keys[0]}", f"must be one of {', '.join(MONITORS)}, got {monitor!r}"
                                                 f"{did_you_mean(str(monitor), MONITORS)}")
    if mode not in ("min", "max"):
        raise ConfigError(f"{prefix}.{keys[1]}", f"must be min or max, got {mode!r}")


def _better(a: float, b: float, mode: str) -> bool:
    """``a`` strictly better than ``b`` in ``mode``; NaN is worse than any number."""
    return not math.isnan(a) and (math.isnan(b) or (a > b if mode == "max" else a < b))


def improves(value: float, tie: float | None, best: float | None, best_tie: float | None, mode: str = "max",
             tie_mode: str = "min") -> bool:
    """Whether an epoch whose monitored metric is ``value`` (its tie-break metric ``tie``) replaces the selected
    epoch (``best``, ``best_tie``): strictly better on the monitor, or exactly equal on it and strictly better on the
    tie-break metric. Exact comparisons, no weighted sum: the monitor always decides first."""
    if best is None:
        return True
    if value == best and tie is not None and best_tie is not None:
        return _better(tie, best_tie, tie_mode)
    return _better(value, best, mode)


def best_checkpoint(dirpath: Path, ckpt_cfg: dict[str, Any]):
    """The callback that writes ``checkpoints/best.ckpt`` (and ``last.ckpt``), selecting epochs with :func:`improves`
    on ``callbacks.checkpoint`` (``monitor``, ``mode``, ``tie_break``, ``tie_break_mode``)."""
    return _best_checkpoint_class()(
        dirpath=str(dirpath), monitor=ckpt_cfg["monitor"], mode=ckpt_cfg["mode"], save_last=ckpt_cfg["save_last"],
        tie_break=ckpt_cfg["tie_break"], tie_break_mode=ckpt_cfg["tie_break_mode"])


@functools.cache
def _best_checkpoint_class():
    """BestCheckpoint, defined on first use: subclassing ModelCheckpoint imports Lightning, which this module's
    importers (the config checks) do not need."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    class BestCheckpoint(ModelCheckpoint):
        """ModelCheckpoint with one file of the best epoch, where ties on the monitor go to the tie-break metric.

        Lightning keeps the first epoch that reaches the best value; on a small validation set ``val/acc`` often
        reaches 1.0 early and stays there, and the first such epoch is rarely the best model. :attr:`selected` says
        which epoch was kept and why (``metrics.json``'s ``selected``).
        """

        def __init__(self, *, tie_break: str | None, tie_break_mode: str, **kwargs: Any):
            super().__init__(filename="best", save_top_k=1, auto_insert_metric_name=False,
                             enable_version_counter=False, **kwargs)
            self.tie_break = tie_break if tie_break != self.monitor else None
            self.tie_break_mode = tie_break_mode
            self.selected: dict[str, Any] | None = None  # the kept epoch: epoch, value, tie_value, val metrics
            self.tied_epochs: list[int] = []  # the epochs whose monitor value equals the kept one's
            self._candidate: dict[str, Any] | None = None

        def check_monitor_top_k(self, trainer, current=None) -> bool:
            if current is None:
                return False
            value = float(current)
            tie = _number(trainer.callback_metrics.get(self.tie_break)) if self.tie_break else None
            best = self.selected if self.best_k_models else None  # none kept yet (or not in this folder)
            best_value, best_tie = (None, None) if best is None else (best["value"], best["tie_value"])
            decision = improves(value, tie, best_value, best_tie, self.mode, self.tie_break_mode)
            decision = trainer.strategy.reduce_boolean_decision(decision)  # every process decides alike
            if best is not None and value == best["value"]:
                self.tied_epochs.append(trainer.current_epoch)
            elif decision:
                self.tied_epochs = [trainer.current_epoch]
            if decision:
                self._candidate = {"epoch": trainer.current_epoch, "value": value, "tie_value": tie,
                                   "metrics": {k: _number(v) for k, v in trainer.callback_metrics.items()
                                               if k.startswith("val/")}}
            return decision

        # Since Lightning 2.6, last.ckpt is written only together with a new best checkpoint: it held the best epoch,
        # not the last one, and a run resumed from it repeated epochs. It is written here whenever Lightning did not,
        # at the hook where Lightning saves (the end of the training epoch, or of validation when validation does
        # not run exactly once per epoch).
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            due = self._saves_at(trainer, train_epoch_end=True)
            super().on_train_epoch_end(trainer, pl_module)
            self._save_last_if_missing(trainer, due)

        def on_validation_end(self, trainer, pl_module) -> None:
            due = self._saves_at(trainer, train_epoch_end=False)
            super().on_validation_end(trainer, pl_module)
            self._save_last_if_missing(trainer, due)

        def _saves_at(self, trainer, *, train_epoch_end: bool) -> bool:
            return (not self._should_skip_saving_checkpoint(trainer)
                    and self._should_save_on_train_epoch_end(trainer) == train_epoch_end)

        def _save_last_if_missing(self, trainer, due: bool) -> None:
            if due and self.save_last is True and self._last_global_step_saved != trainer.global_step:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

        def _update_best_and_save(self, current, trainer, monitor_candidates) -> None:
            super()._update_best_and_save(current, trainer, monitor_candidates)
            self.selected = self._candidate

        def selection(self) -> dict[str, Any] | None:
            """The kept epoch, its monitor and tie-break values, the epochs that tied and a sentence saying why."""
            if self.selected is None:
                return None
            s, tied = self.selected, self.tied_epochs
            extreme = "highest" if self.mode == "max" else "lowest"
            reason = f"the {extreme} {self.monitor} ({s['value']:.6g})"
            if len(tied) <= 1:
                reason += f", reached at epoch {s['epoch']} only"
            elif self.tie_break and s["tie_value"] is not None:
                tie_extreme = "highest" if self.tie_break_mode == "max" else "lowest"
                reason += (f" at epochs {', '.join(map(str, tied))}; of these, epoch {s['epoch']} has the "
                           f"{tie_extreme} {self.tie_break} ({s['tie_value']:.6g})")
            else:
                reason += f" at epochs {', '.join(map(str, tied))}; the first is kept (no tie-break metric)"
            return {"epoch": s["epoch"], "monitor": self.monitor, "mode": self.mode, "value": s["value"],
                    "tie_break": self.tie_break, "tie_break_mode": self.tie_break_mode if self.tie_break else None,
                    "tie_value": s["tie_value"], "tied_epochs": list(tied), "val_metrics": dict(s["metrics"]),
                    "checkpoint": self.best_model_path or None, "reason": reason}

        def state_dict(self) -> dict[str, Any]:
            return {**super().state_dict(), "selected": self.selected, "tied_epochs": list(self.tied_epochs)}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            super().load_state_dict(state_dict)
            if self.best_k_models:  # Lightning restored the kept epoch (same folder): so is its record
                self.selected = state_dict.get("selected") or {  # a checkpoint from before tie-breaking
                    "epoch": None, "value": float(self.best_model_score), "tie_value": None, "metrics": {}}
                self.tied_epochs = list(state_dict.get("tied_epochs") or [])

    BestCheckpoint.__qualname__ = "BestCheckpoint"  # the name in checkpoints' callback states
    return BestCheckpoint


def run_checkpoint_io(accelerator: str = "auto"):
    """The run's CheckpointIO: atomic files (:func:`atomic_checkpoint_io`), written by a writer thread while training
    goes on (:mod:`cnnrun.train.checkpoint_io`: finished before the fit ends, a failed write fails the run) when
    :func:`writer_thread_pays`, else by the training thread."""
    if not writer_thread_pays(accelerator):
        return atomic_checkpoint_io()
    from cnnrun.train.checkpoint_io import BackgroundCheckpointIO

    return BackgroundCheckpointIO(atomic_checkpoint_io())


def writer_thread_pays(accelerator: str) -> bool:
    """Whether a writer thread (checkpoints, :mod:`cnnrun.train.checkpoint_io`; dashboard pictures,
    :mod:`cnnrun.train.deferred_writer`) makes training faster: when the training leaves a CPU core for it (torch's
    threads fewer than the cores this process may use) or trains on a GPU. On a CPU whose every core runs a torch
    thread, the writer takes turns with threads that spin-wait for each other: LeNet-5 on 2 cores with 2 threads
    fitted 1.05-1.17x slower with it, with 1 thread 0.92-1.02x (benchmarks/RESULTS.md)."""
    import joblib
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return on_gpu or torch.get_num_threads() < joblib.cpu_count()


def atomic_checkpoint_io():
    """Lightning's TorchCheckpointIO, writing every checkpoint through :func:`cnnrun.atomic.atomic_write`: a process
    killed while saving leaves the previous complete ``last.ckpt``/``best.ckpt``, never a truncated one."""
    return _atomic_checkpoint_io_class()()


@functools.cache
def _atomic_checkpoint_io_class():
    """AtomicCheckpointIO, defined on first use (subclassing imports Lightning, as for BestCheckpoint)."""
    import torch
    from pytorch_lightning.plugins import TorchCheckpointIO

    from cnnrun.atomic import atomic_write

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
            if storage_options is not None:
                raise TypeError(f"{type(self).__name__} takes no storage_options")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: torch.save(checkpoint, f))

        def __reduce__(self):  # picklable (ddp_spawn sends the trainer to its processes) though defined locally
            return atomic_checkpoint_io, ()

    return AtomicCheckpointIO


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def check_strategy(strategy: Any) -> None:
    """DDP re-runs the command once per extra device; in a Hydra multirun that would re-run the whole sweep, so a
    sweep of DDP jobs needs a launcher that starts the processes itself (SLURM through hydra/launcher=slurm)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from cnnrun.distributed import launched_externally

    name = str(strategy)
    if not name.startswith("ddp") or name in ("ddp_spawn", "ddp_fork", "ddp_notebook") or "spawn" in name:
        return
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN and not launched_externally():
        raise ConfigError("trainer.strategy", f"{name} starts its other processes by re-running the command, which "
                                              f"a -m sweep cannot do: run DDP jobs one at a time, or sweep them "
                                              f"with hydra/launcher=slurm (tasks_per_node = devices), or use "
                                              f"trainer.strategy=ddp_spawn")


def launcher_share(launcher: Mapping[str, Any] | None, cores: int) -> tuple[int, int | None]:
    """(how many jobs of the sweep run at once on this machine, the CPUs the launcher gives each job or None).

    joblib runs ``n_jobs`` jobs at once (joblib's convention: -1 all cores, -2 all but one, ...); a submitit job
    gets ``cpus_per_task`` CPUs (on SLURM, its allocation); any other launcher runs one job at a time.
    """
    target = str((launcher or {}).get("_target_") or "")
    if target.endswith("JoblibLauncher"):
        n_jobs = int(launcher.get("n_jobs") or 1)
        if n_jobs < 0:
            n_jobs = cores + 1 + n_jobs
        return max(1, n_jobs), None
    if "submitit" in target:
        cpus = launcher.get("cpus_per_task")
        return 1, int(cpus) if cpus else None
    return 1, None


def plan_threads(setting: int | str | None, cores: int, parallel: int, budget: int | None = None,
                 busy: float = 0.0) -> int | None:
    """torch's intra-op threads for one job: an explicit count; for ``auto``, the launcher's CPU budget, else
    cores / parallel jobs (at least 1) when jobs run in parallel, else the cores that other processes leave free
    (``busy``: how many they keep busy, :func:`busy_cpus`) when they are fewer than ``cores``; None leaves torch's
    default (one job at a time on a quiet machine). ``cores`` are the CPUs this process may use (its affinity and
    cgroup quota)."""
    if setting not in (None, "auto"):
        return int(setting)
    if budget:
        return int(budget)
    if parallel > 1:
        return max(1, cores // parallel)
    free = int(cores - busy + 0.5)
    if setting == "auto" and free < cores:  # torch's threads spin-wait for each other on shared cores
        return max(1, free)
    return None


def busy_cpus(samples: int = 5, interval_s: float = 0.005, loadavg: str = "/proc/loadavg") -> float:
    """How many CPUs other processes keep busy now: the median of a few readings of the kernel's count of runnable
    threads (the fourth field of /proc/loadavg, which counts the reading thread too) less this one; 0 where the
    count cannot be read (not Linux). Instantaneous, unlike the load average, which still counts a run that ended
    a minute ago. Five readings 5 ms apart (about a scheduler tick) take 20 ms of every job's start."""
    readings = []
    for i in range(samples):
        try:
            running = int(Path(loadavg).read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return 0.0
        readings.append(max(0, running - 1))
        if i < samples - 1:
            time.sleep(interval_s)
    return float(statistics.median(readings))


def plan_devices(devices: Any, accelerator: str, job_num: int | None, gpus: int) -> tuple[Any, str]:
    """A job of a sweep on a machine with several GPUs trains on its own one (job number modulo the visible GPUs)
    when it asks for one device (``devices: 1`` or ``auto``) of any GPU; other settings are left as they are."""
    if job_num is None or gpus < 2 or str(accelerator) not in ("auto", "gpu", "cuda"):
        return devices, accelerator
    if devices in (1, "1", "auto"):
        return [job_num % gpus], "gpu" if str(accelerator) == "auto" else accelerator
    return devices, accelerator


def apply_job_resources(cfg: dict[str, Any]) -> dict[str, Any]:
    """Where a job starts: set torch's threads and pick the job's GPU (updates ``cfg['trainer']``); returns what was
    chosen, for metrics.json."""
    import joblib
    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    trainer_cfg = cfg["trainer"]
    launcher, job_num = None, None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            launcher, job_num = hc.launcher, int(hc.job.num)
    cores = joblib.cpu_count()
    parallel, budget = launcher_share(launcher, cores)
    busy = busy_cpus() if trainer_cfg["threads"] == "auto" and parallel == 1 and not budget else 0.0
    threads = plan_threads(trainer_cfg["threads"], cores, parallel, budget, busy)
    if threads is not None:
        if busy:  # fewer threads than torch's default, never more
            threads = min(threads, torch.get_num_threads())
        torch.set_num_threads(threads)
    distributed = str(trainer_cfg["strategy"]).startswith("ddp")  # devices are the job's own choice
    devices, accelerator = plan_devices(trainer_cfg["devices"], trainer_cfg["accelerator"],
                                        None if distributed else job_num,
                                        torch.cuda.device_count() if torch.cuda.is_available() else 0)
    trainer_cfg["devices"], trainer_cfg["accelerator"] = devices, accelerator
    return {"threads": torch.get_num_threads(), "cores": cores, "busy_cpus": busy, "parallel_jobs": parallel,
            "devices": devices, "accelerator": accelerator}


def quiet_lightning() -> None:
    """Drop Lightning's start-up chatter (accelerator availability, tips) that repeats on every run."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda", "lightning_fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # cnnrun reduces its epoch metrics across processes itself (sums of losses, correct counts and sizes)
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
    # The test deliberately runs without the weight-averaging callback (it would restore the raw weights).
    warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided.*")
    # Resuming from another run's last.ckpt writes into this run's folder, by design.
    warnings.filterwarnings("ignore", message="The dirpath has changed from.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    # cnnrun logs per epoch; log_every_n_steps (Lightning's default 50) only paces step-level logging a user adds
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")


def make_trainer(cfg: dict[str, Any], run_dir: Path, *, with_logger: bool = True):
    """A pl.Trainer writing checkpoints to ``run_dir/checkpoints`` and TensorBoard logs to ``run_dir/tensorboard``."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping

    quiet_lightning()
    cb_cfg = cfg["callbacks"]
    callbacks: list[Any] = [best_checkpoint(run_dir / "checkpoints", cb_cfg["checkpoint"])]
    early = cb_cfg["early_stopping"]
    if early["enabled"]:
        callbacks.append(EarlyStopping(monitor=early["monitor"], mode=early["mode"], patience=early["patience"],
                                       min_delta=early["min_delta"]))
    from cnnrun.train.pruning import pruning_callback

    pruning = pruning_callback()  # only in a job that runs an Optuna trial
    if pruning is not None:
        callbacks.append(pruning)
    from cnnrun.train.stepping import STEP_KEYS

    # the module's Stepper applies clipping and accumulation (Lightning refuses them with manual optimisation)
    # (a Lightning argument left null keeps Lightning's default)
    trainer_kwargs = {k: v for k, v in cfg["trainer"].items()
                      if k not in OWN_KEYS and k not in STEP_KEYS and v is not None}
    if trainer_kwargs.get("profiler") in ("simple", "advanced"):  # its report goes into the run folder
        from pytorch_lightning.profilers import AdvancedProfiler, SimpleProfiler

        profiler = SimpleProfiler if trainer_kwargs["profiler"] == "simple" else AdvancedProfiler
        trainer_kwargs["profiler"] = profiler(dirpath=str(run_dir), filename="profile")
    refresh = cb_cfg["progress_bar"]["refresh_rate"]
    if refresh and trainer_kwargs.get("enable_progress_bar", True):
        from cnnrun.train.progress import LongRunHint, RunProgressBar

        callbacks += [RunProgressBar(refresh_rate=refresh), LongRunHint()]  # the whole run's progress and time left
    else:
        trainer_kwargs["enable_progress_bar"] = False
    loggers = make_loggers(cfg["logger"], run_dir) if with_logger else []
    plugins = trainer_kwargs.pop("plugins", None) or []
    plugins = [*(plugins if isinstance(plugins, list) else [plugins]),
               run_checkpoint_io(cfg["trainer"]["accelerator"])]
    return pl.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers or False,
                      enable_model_summary=False, plugins=plugins, **trainer_kwargs)


def check_logger_config(logger_cfg: dict[str, Any]) -> None:
    """The optional loggers' packages are installed (checked before training, without importing them)."""
    import importlib.util

    mlflow = logger_cfg["mlflow"]
    if mlflow and importlib.util.find_spec("mlflow") is None:
        raise ConfigError("logger.mlflow", "needs the mlflow package: pip install 'cnnrun[mlflow]' (or choose "
                                           "logger=tensorboard or logger=csv)")
    if mlflow is not None and not isinstance(mlflow, (bool, dict)):
        raise ConfigError("logger.mlflow", f"must be a mapping (tracking_uri, experiment_name) or false, got {mlflow!r}")


def make_loggers(logger_cfg: dict[str, Any], run_dir: Path) -> list[Any]:
    """The run's Lightning loggers (``logger=`` one of tensorboard, csv, mlflow, or a list of them): TensorBoard in
    ``<run>/tensorboard``, CSV in ``<run>/csv/metrics.csv``, MLflow in a local SQLite store (``outputs/mlflow.db``
    unless ``logger.mlflow.tracking_uri`` names another), one MLflow run per cnnrun run, named after its folder."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Any] = []
    if logger_cfg["tensorboard"]:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="",
                                         default_hp_metric=False))
    if logger_cfg["csv"]:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv", version=""))
    mlflow = logger_cfg["mlflow"]
    if mlflow:
        check_logger_config(logger_cfg)
        from pytorch_lightning.loggers import MLFlowLogger

        settings = mlflow if isinstance(mlflow, dict) else {}
        uri = settings.get("tracking_uri")
        if not uri:  # MLflow's file store is deprecated; SQLite needs no server either
            (Path.cwd() / "outputs").mkdir(exist_ok=True)
            uri = f"sqlite:///{Path.cwd() / 'outputs' / 'mlflow.db'}"
        loggers.append(MLFlowLogger(experiment_name=settings.get("experiment_name") or "cnnrun",
                                    run_name=run_dir.name, tracking_uri=uri))
    return loggers
