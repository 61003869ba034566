"""Train (fit, then test the best checkpoint) or test a checkpoint; fill the run's record."""
from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from cnnrun.data import load_data
from cnnrun.model import summarize
from cnnrun.train.datamodule import InMemoryDataModule
from cnnrun.train.dashboards import final_scalars, make_dashboards
from cnnrun.train.interrupt import Interrupted, graceful_stop, resumable
from cnnrun.train.module import Classifier
from cnnrun.record import RunRecord
from cnnrun.runfiles import flat_hparams, log_session, print_final, print_summary, write_json
from cnnrun.train.trainer import make_trainer


def _summary_markdown(summary: dict[str, Any]) -> str:
    lines = ["| layer | type | output shape | params | MACs |", "|---|---|---|---:|---:|"]
    for row in summary["layers"]:
        lines.append(f"| {'&nbsp;&nbsp;' * row['depth']}{row['name']} | {row['type']} | "
                     f"{tuple(row['output_shape'])} | {row['params']:,} | {row['macs']:,} |")
    lines.append(f"\n**total params** {summary['total_params']:,} · **MACs** {summary['macs']:,}")
    return "\n".join(lines)


# Keys that shape batches, not the loaded splits: jobs of a sweep that differ only in them share the data.
_LOADER_KEYS = ("batch_size", "augment", "augment_recipe", "balance", "num_workers", "download", "stats")
_loaded: dict[str, Any] = {}


def load_data_cached(data_cfg: dict[str, Any]):
    """load_data, reusing the previous job's splits when the data config asks for the same ones (the jobs of a
    sweep run by Hydra's basic launcher share one process). Holds one data set at a time."""
    import json

    key = json.dumps({k: v for k, v in data_cfg.items() if k not in _LOADER_KEYS}, sort_keys=True, default=str)
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_data(data_cfg)
    return _loaded[key]


def clean_train_loader(datamodule: InMemoryDataModule):
    """The training split in evaluation order, without augmentation or re-balancing."""
    return datamodule.train_eval_dataloader()


def load_splits(plain: dict[str, Any], record: RunRecord):
    """The run's data splits; their statistics complete the config (``data.stats``; mode=test keeps the
    checkpoint's), their sizes and class counts go into the record."""
    splits = load_data_cached(plain["data"])
    own = plain["data"].get("stats") if plain["mode"] == "test" else None  # the checkpoint's (run.py)
    if own:
        splits = dataclasses.replace(splits, stats=own)  # a copy: the cached splits keep theirs
    plain["data"]["stats"] = splits.stats
    record.data_sizes = splits.sizes()
    record.class_counts = {split: splits.class_counts(split) for split in ("train", "val", "test")}
    return splits


def fit_and_test(plain: dict[str, Any], model: torch.nn.Module, splits, run_dir: Path, record: RunRecord,
                 started: float, resume_from: Path | None = None) -> None:
    """Train ``model`` on ``splits`` (from :func:`load_splits`) and test the selected checkpoint, or test the
    configured checkpoint (``mode=test``); fill ``record`` with what happened. ``resume_from``: the run's own
    ``last.ckpt``, whose training it continues in its folder (:mod:`cnnrun.resume`).

    SIGINT and SIGTERM stop training and testing at the next batch (:mod:`cnnrun.train.interrupt`): the record then
    holds the finished epochs, and :class:`Interrupted` is raised."""
    summary = summarize(model, plain["data"]["input_shape"])
    write_json(run_dir / "summary.json", summary)
    print_summary(summary)
    record.params = summary["total_params"]

    module = Classifier(plain, model)
    datamodule = InMemoryDataModule(splits, plain["data"]["batch_size"], plain["seed"], data=plain["data"])
    trainer = make_trainer(plain, run_dir)
    from pytorch_lightning.loggers import TensorBoardLogger

    tb = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    trainer.callbacks.extend(make_dashboards(plain, tb))
    ema_decay = plain["regularization"]["ema_decay"]
    if ema_decay:  # validation, checkpoints and the test use the averaged weights
        from pytorch_lightning.callbacks import EMAWeightAveraging

        trainer.callbacks.append(EMAWeightAveraging(decay=float(ema_decay)))
    if tb is not None and plain["logger"]["log_summary"] and resume_from is None:  # a resumed run logged it (step 0)
        tb.experiment.add_text("model/summary", _summary_markdown(summary), 0)
    if resume_from is not None:  # the run's own checkpoints are in its folder, by design
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    try:
        with graceful_stop() as stop:
            trainer.callbacks.append(resumable(stop, restore_history=resume_from is not None))
            _train_and_test(plain, module, datamodule, trainer, tb, run_dir, record, started, resume_from)
    except Interrupted:
        _record_finished_epochs(record, module, trainer)
        raise


def _train_and_test(plain: dict[str, Any], module: Classifier, datamodule: InMemoryDataModule, trainer, tb,
                    run_dir: Path, record: RunRecord, started: float, resume_from: Path | None) -> None:
    """fit_and_test's training and test, and the record of their results."""
    if plain["mode"] == "train":
        fit_started = time.time()
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from or plain["ckpt_path"])
        record.fit_s = round(time.time() - fit_started, 3)
        first_step = module.stepper.started_at if module.stepper is not None else None
        if first_step is not None:
            record.time_to_first_step_s = round(first_step - started, 3)
        test_ckpt = _record_selection(record, trainer)
    else:
        test_ckpt = plain["ckpt_path"]
    # With weight averaging (ema) a checkpoint's state_dict holds the averaged weights, which are the ones to test;
    # the averaging callback would restore the raw training weights on load (to resume training), so it leaves.
    from pytorch_lightning.callbacks import WeightAveraging

    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False)  # print_final shows them

    if getattr(module, "shards", None):
        record.distributed = module.shards
    last = module.history[-1] if module.history else {}
    metrics = {k: last[k] for k in ("train/loss", "train/acc", "val/loss", "val/acc") if k in last}
    if plain["mode"] == "train":
        # The generalization gap needs the training accuracy of the selected weights without dropout, augmentation
        # or mixing: evaluate them on the training split, as on the validation and test splits. The test above
        # loaded them into the module: no second load of the checkpoint.
        module.eval_stage = "train_eval"
        trainer.test(module, dataloaders=clean_train_loader(datamodule), ckpt_path=None, verbose=False)
        module.eval_stage = "test"
    metrics.update(getattr(module, "eval_metrics", {}))
    if "train_eval/acc" in metrics:
        best_val = record.best_val_acc
        metrics["best/val_acc"] = best_val if best_val is not None else metrics.get("val/acc")
        if metrics["best/val_acc"] is not None:
            metrics["gap"] = metrics["train_eval/acc"] - metrics["best/val_acc"]
    record.metrics = metrics
    record.epochs = len(module.history)
    record.history = module.history  # with the epochs before a resume (the checkpoint kept them)
    final = final_scalars(metrics)
    hparams = flat_hparams(plain)
    for logger in trainer.loggers:  # the hyperparameters with the run's final metrics (TensorBoard's HPARAMS tab)
        if logger is tb:
            log_session(logger, hparams, final, run_dir, step=trainer.current_epoch)
        else:
            logger.log_hyperparams(hparams)
            logger.log_metrics(final, step=trainer.current_epoch)
        logger.finalize("success")
    print_final(metrics, run_dir)


def _record_selection(record: RunRecord, trainer) -> str | None:
    """The best checkpoint so far and which epoch it holds, and why (the monitor, its tie-break and the epochs that
    tied); returns its path (None before the first one)."""
    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
    record.best_checkpoint = best or None
    record.selected = ckpt_cb.selection() if best else None
    record.best_val_acc = (record.selected or {}).get("val_metrics", {}).get("val/acc")
    return best or None


def _record_finished_epochs(record: RunRecord, module: Classifier, trainer) -> None:
    """An interrupted run: its finished epochs (those in last.ckpt), the metrics of the last one, the best so far."""
    record.history, record.epochs = module.history, len(module.history)
    last = module.history[-1] if module.history else {}
    record.metrics = {k: v for k, v in last.items() if k != "epoch"}
    if module.config["mode"] == "train":
        _record_selection(record, trainer)
