"""The Trainer factory: pl.Trainer from the ``trainer``, ``callbacks`` and ``logger`` config groups."""
from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any, Mapping

from cnnrun.errors import ConfigError, did_you_mean

# Keys of the trainer group that cnnrun resolves itself (not passed to pytorch_lightning.Trainer).
OWN_KEYS = ("threads", "channels_last", "compile")
COMPILE_KEYS = ("fullgraph", "dynamic", "backend", "mode", "options", "disable")


def check_trainer_config(trainer_cfg: dict[str, Any]) -> None:
    """Unknown Trainer arguments, non-positive epoch counts and bad thread counts are config errors."""
    import pytorch_lightning as pl

    accepted = [p for p in inspect.signature(pl.Trainer.__init__).parameters if p != "self"]
    for key in trainer_cfg:
        if key not in accepted and key not in OWN_KEYS:
            raise ConfigError(f"trainer.{key}", f"is not an argument of pytorch_lightning.Trainer"
                                                f"{did_you_mean(key, [*accepted, *OWN_KEYS])}")
    threads = trainer_cfg.get("threads", "auto")
    if not (threads is None or threads == "auto" or (isinstance(threads, int) and not isinstance(threads, bool)
                                                     and threads >= 1)):
        raise ConfigError("trainer.threads", f"must be auto or a positive integer, got {threads!r}")
    if not isinstance(trainer_cfg.get("channels_last", False), bool):
        raise ConfigError("trainer.channels_last", f"must be true or false, got {trainer_cfg['channels_last']!r}")
    compile_cfg = trainer_cfg.get("compile", False)
    if isinstance(compile_cfg, dict):
        for key in compile_cfg:
            if key not in COMPILE_KEYS:
                raise ConfigError(f"trainer.compile.{key}", f"is not an argument of torch.compile"
                                                            f"{did_you_mean(key, COMPILE_KEYS)} (known: "
                                                            f"{', '.join(COMPILE_KEYS)})")
    elif not isinstance(compile_cfg, bool):
        raise ConfigError("trainer.compile", f"must be true, false or a mapping of torch.compile arguments, got "
                                             f"{compile_cfg!r}")
    check_strategy(trainer_cfg.get("strategy", "auto"))
    from cnnrun.train.stepping import check_step_config

    check_step_config(trainer_cfg)
    epochs = trainer_cfg.get("max_epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError("trainer.max_epochs", f"must be a positive integer, got {epochs!r}")
    for key in ("callbacks", "logger", "default_root_dir", "enable_checkpointing"):
        if key in trainer_cfg:
            raise ConfigError(f"trainer.{key}", "is set by cnnrun from the callbacks/ and logger/ groups and the "
                                                "run folder; configure it there")


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


def plan_threads(setting: int | str | None, cores: int, parallel: int, budget: int | None = None) -> int | None:
    """torch's intra-op threads for one job: an explicit count; for ``auto``, the launcher's CPU budget, else
    cores / parallel jobs (at least 1) when jobs run in parallel; None leaves torch's default (one job at a time)."""
    if setting not in (None, "auto"):
        return int(setting)
    if budget:
        return int(budget)
    if parallel > 1:
        return max(1, cores // parallel)
    return None


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
    threads = plan_threads(trainer_cfg.get("threads", "auto"), cores, parallel, budget)
    if threads is not None:
        torch.set_num_threads(threads)
    distributed = str(trainer_cfg.get("strategy", "auto")).startswith("ddp")  # devices are the job's own choice
    devices, accelerator = plan_devices(trainer_cfg.get("devices", 1), trainer_cfg.get("accelerator", "auto"),
                                        None if distributed else job_num,
                                        torch.cuda.device_count() if torch.cuda.is_available() else 0)
    trainer_cfg["devices"], trainer_cfg["accelerator"] = devices, accelerator
    return {"threads": torch.get_num_threads(), "cores": cores, "parallel_jobs": parallel, "devices": devices,
            "accelerator": accelerator}


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
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar, TQDMProgressBar
    from pytorch_lightning.loggers import TensorBoardLogger

    quiet_lightning()
    cb_cfg = cfg.get("callbacks", {})
    ckpt = cb_cfg.get("checkpoint", {})
    callbacks: list[Any] = [ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"), filename="best", monitor=ckpt.get("monitor", "val/acc"),
        mode=ckpt.get("mode", "max"), save_top_k=1, save_last=ckpt.get("save_last", True),
        auto_insert_metric_name=False, enable_version_counter=False)]
    early = cb_cfg.get("early_stopping") or {}
    if early.get("enabled", False):
        callbacks.append(EarlyStopping(monitor=early.get("monitor", "val/acc"), mode=early.get("mode", "max"),
                                       patience=early.get("patience", 10), min_delta=early.get("min_delta", 0.0)))
    from cnnrun.train.pruning import pruning_callback

    pruning = pruning_callback()  # only in a job that runs an Optuna trial
    if pruning is not None:
        callbacks.append(pruning)
    from cnnrun.train.stepping import STEP_KEYS

    # the module's Stepper applies clipping and accumulation (Lightning refuses them with manual optimisation)
    trainer_kwargs = {k: v for k, v in cfg["trainer"].items() if k not in OWN_KEYS and k not in STEP_KEYS}
    refresh = (cb_cfg.get("progress_bar") or {}).get("refresh_rate", 1)
    if refresh and trainer_kwargs.get("enable_progress_bar", True):
        try:
            import rich  # noqa: F401
            callbacks.append(RichProgressBar(refresh_rate=refresh))
        except ImportError:
            callbacks.append(TQDMProgressBar(refresh_rate=refresh))
    else:
        trainer_kwargs["enable_progress_bar"] = False
    logger: Any = False
    if with_logger and cfg.get("logger", {}).get("tensorboard", False):
        logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    return pl.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=logger,
                      enable_model_summary=False, **trainer_kwargs)
