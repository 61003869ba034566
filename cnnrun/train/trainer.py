"""The Trainer factory: pl.Trainer from the ``trainer``, ``callbacks`` and ``logger`` config groups."""
from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

from cnnrun.errors import ConfigError, did_you_mean


def check_trainer_config(trainer_cfg: dict[str, Any]) -> None:
    """Unknown Trainer arguments and non-positive epoch counts are config errors."""
    import pytorch_lightning as pl

    accepted = [p for p in inspect.signature(pl.Trainer.__init__).parameters if p != "self"]
    for key in trainer_cfg:
        if key not in accepted:
            raise ConfigError(f"trainer.{key}", f"is not an argument of pytorch_lightning.Trainer"
                                                f"{did_you_mean(key, accepted)}")
    epochs = trainer_cfg.get("max_epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError("trainer.max_epochs", f"must be a positive integer, got {epochs!r}")
    for key in ("callbacks", "logger", "default_root_dir", "enable_checkpointing"):
        if key in trainer_cfg:
            raise ConfigError(f"trainer.{key}", "is set by cnnrun from the callbacks/ and logger/ groups and the "
                                                "run folder; configure it there")


def quiet_lightning() -> None:
    """Drop Lightning's start-up chatter (accelerator availability, tips) that repeats on every run."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda", "lightning_fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Resuming from another run's last.ckpt writes into this run's folder, by design.
    warnings.filterwarnings("ignore", message="The dirpath has changed from.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


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
    trainer_kwargs = dict(cfg["trainer"])
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
    trainer_kwargs.setdefault("log_every_n_steps", 1)
    return pl.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=logger,
                      enable_model_summary=False, **trainer_kwargs)
