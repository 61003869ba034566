"""``run(cfg)``: what the CLI does for one config. Every run leaves a self-contained folder:

    config.yaml  summary.json  metrics.json  checkpoints/{best,last}.ckpt  tensorboard/
"""
from __future__ import annotations

import os
import platform
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnrun.atomic import check_writable, remove_stray_temporaries, unwritable_cause
from cnnrun.config import check_root, command_line, import_user_modules, run_dir_and_overrides, to_plain
from cnnrun.errors import ConfigError, Diverged
from cnnrun.record import RunRecord, started_with
from cnnrun.resume import (LAST_CHECKPOINT, Continuation, clear_attempt, continue_job, continue_run,
                           resume_command, resume_folder)
from cnnrun.runfiles import print_summary, write_config, write_json
from cnnrun.sweep import current_launch
from cnnrun.train.interrupt import Interrupted
from cnnrun.train.pruning import Pruned


def check_before_imports(plain: dict[str, Any]) -> None:
    """The checks that need neither torch nor Lightning, run first so that a wrong value is reported within a second
    of the command: the root keys, the data settings every source shares (and a torchvision set's shape, classes and
    files), the optimizer's and schedule's names and the learning rate, the loss's name, regularization, the Trainer,
    callbacks and logger settings. The values that builders check (a layer's, a source's, a schedule's, a loss's, an
    augmentation's) come with :func:`check_with_torch`."""
    from cnnrun.data import check_light_source, check_shared_data_values
    from cnnrun.train.dashboard_plan import dashboard_plan
    from cnnrun.train.objectives import check_loss_name, check_regularization_config
    from cnnrun.train.optim import check_optim_names
    from cnnrun.train.trainer import check_callbacks_config, check_logger_config, check_trainer_config

    check_root(plain)
    import_user_modules(plain["imports"])  # they may register layer types, sources, optimizers, objectives
    init = plain["model"].get("init_weights") if isinstance(plain["model"], dict) else None
    if init is not None and plain["mode"] != "test":  # mode=test takes the checkpoint's model, without them
        from cnnrun.model.torchvision_weights import check_init_weights

        check_init_weights(init)
    check_shared_data_values(plain["data"])
    check_light_source(plain["data"], reads=plain["mode"] in ("train", "test"))
    check_optim_names(plain["optim"], plain["sched"])
    check_loss_name(plain["loss"])
    check_regularization_config(plain["regularization"])
    check_trainer_config(plain["trainer"])
    check_callbacks_config(plain["callbacks"])
    dashboard_plan(plain["logger"])
    check_logger_config(plain["logger"])


def check_with_torch(plain: dict[str, Any]) -> None:
    """The checks that need torch but not Lightning, run before Lightning is imported (seconds): the data source's
    own settings, the input shape and the augmentation; the model's layers and shapes, by building it on the meta
    device (no memory, no random numbers drawn); the objective's, optimizer's and schedule's values."""
    import torch

    from cnnrun.data import check_data_config
    from cnnrun.model import build_model
    from cnnrun.train.objectives import check_loss_config
    from cnnrun.train.optim import check_schedule, make_optimizer

    check_data_config(plain["data"], reads=plain["mode"] in ("train", "test"))
    with torch.device("meta"):
        build_model(plain["model"], plain["data"]["input_shape"], plain["data"]["num_classes"])
    check_loss_config(plain["loss"])
    # last: building a torch optimizer imports torch._dynamo (about 2 s; Lightning would import it next anyway)
    make_optimizer([torch.nn.Parameter(torch.zeros(1))], plain["optim"])
    check_schedule(plain["sched"])


def build_checked_model(plain: dict[str, Any]):
    """The model of a config that passed the checks, built on the CPU with the run's random numbers."""
    from cnnrun.model import build_model

    return build_model(plain["model"], plain["data"]["input_shape"], plain["data"]["num_classes"])


def adopt_checkpoint_model(plain: dict[str, Any]) -> None:
    """mode=test: use the checkpoint's own model spec, so that the weights always fit the architecture, and its own
    input statistics (``data.stats``), so that its inputs are standardised as in training."""
    import torch

    ckpt = torch.load(plain["ckpt_path"], map_location="cpu", weights_only=True)
    saved = ckpt.get("hyper_parameters", {}).get("config")
    if not saved:
        raise ConfigError("ckpt_path", f"{plain['ckpt_path']} was not written by cnnrun (no config inside)")
    if list(saved["data"]["input_shape"]) != list(plain["data"]["input_shape"]):
        raise ConfigError("data.input_shape", f"is {plain['data']['input_shape']} but the checkpoint's model was "
                                              f"built for {saved['data']['input_shape']}")
    plain["model"] = saved["model"]
    if isinstance(plain["model"].get("init_weights"), dict):  # the checkpoint holds the weights now
        plain["model"]["init_weights"]["path"] = None
    # the model learned on inputs standardised with its own training split's statistics: test with them
    if saved["data"].get("stats"):
        plain["data"]["stats"] = saved["data"]["stats"]


def run(cfg: DictConfig | dict, output_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Run ``cfg`` (from :func:`cnnrun.compose` or the CLI) as the CLI does; return the final metrics.

    Writes ``metrics.json`` in every case (where the run folder can still be written). Raises :class:`ConfigError`
    for a bad config or an unwritable run folder (before any training), :class:`Diverged` when the loss becomes NaN
    or infinite, :class:`Interrupted` after SIGINT or SIGTERM, and lets other errors through after recording them.

    ``resume=<run folder>`` continues that run in its folder; a job of a sweep run again into the same sweep folder
    continues its earlier attempt (:mod:`cnnrun.resume`).
    """
    started = time.time()
    resume = OmegaConf.select(cfg, "resume") if isinstance(cfg, DictConfig) else cfg.get("resume")
    if resume:  # the run continues in its own folder
        folder = resume_folder(resume).absolute()
        if output_dir is not None and Path(output_dir).absolute() != folder:
            raise ConfigError("resume", f"continues the run in its own folder ({folder}), not in {output_dir}")
        output_dir = folder
    run_dir, overrides = writable_run_dir(output_dir)
    record = RunRecord(status="failed", overrides=overrides, run_dir=str(run_dir),
                       started_at=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                       host=platform.node(), launch=current_launch())
    plain: dict[str, Any] | None = None
    config_written = False  # config.yaml is written once: when the config is complete, or at the end
    # a run that is not run again (completed, or a resume refused) keeps its metrics.json and config.yaml
    keep_record = bool(resume)
    try:
        from cnnrun.generalization import apply_generalization, method_name

        if isinstance(cfg, dict):
            cfg = OmegaConf.create(cfg)
        record.method = method_name(cfg)
        plain = to_plain(apply_generalization(cfg))
        continuation = _continuation(run_dir, plain, cfg)
        if continuation.action == "skip":
            keep_record = True
            return dict(continuation.previous.metrics)
        if continuation.action == "resume":
            plain = continuation.config
            _continue_record(record, continuation, run_dir, overrides)
        keep_record = False
        record.seed, record.mode = plain.get("seed"), plain.get("mode")
        if plain.get("mode") in ("gallery", "summary"):  # modes that load no data: the config is complete now
            write_config(run_dir, plain)
            config_written = True
        if plain.get("mode") == "gallery":
            from cnnrun.report.gallery import check_gallery, gallery

            check_gallery(plain)  # the picture's kind and image before the layers (torch) load
            from cnnrun.layers.registry import get_layer_type

            return gallery(plain, run_dir, record, get_layer_type)
        check_before_imports(plain)
        if plain["mode"] == "test":
            adopt_checkpoint_model(plain)
        check_with_torch(plain)  # a wrong layer is reported now, not after Lightning's import (seconds)
        if plain["mode"] == "summary":
            import torch

            if isinstance(plain.get("seed"), int):
                torch.manual_seed(plain["seed"])
            model = build_checked_model(plain)
            return _summary_only(plain, model, run_dir, record)
        import pytorch_lightning as pl

        from cnnrun.train.module import run_seed

        pl.seed_everything(run_seed(plain), workers=True, verbose=False)
        model = build_checked_model(plain)
        record.params = sum(p.numel() for p in model.parameters())
        from cnnrun.train.trainer import apply_job_resources

        record.resources = apply_job_resources(plain)  # threads and GPU of this job (parallel sweeps)
        from cnnrun.train.fit import fit_and_test, load_splits

        splits = load_splits(plain, record)  # the training split's statistics complete the config
        write_config(run_dir, plain)
        config_written = True
        fit_and_test(plain, model, splits, run_dir, record, started, continuation.checkpoint)
        record.status = "completed"
        return dict(record.metrics)
    except Diverged as err:
        record.status, record.error = "diverged", str(err)
        record.diverged_at = {"epoch": err.epoch, "step": err.step}
        raise
    except ConfigError as err:
        record.error = str(err)
        raise
    except Pruned as err:  # an Optuna trial stopped by its pruner: a normal end, not a failure
        record.status, record.pruned_at = "pruned", {"epoch": err.epoch, "val/acc": err.value}
        record.history, record.epochs = err.history, len(err.history)
        record.metrics = {k: v for k, v in (err.history[-1] if err.history else {}).items() if k != "epoch"}
        raise
    except KeyboardInterrupt as err:  # SIGINT or SIGTERM in training; a plain KeyboardInterrupt came before it
        interrupted = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT, immediate=True)
        _record_interruption(record, interrupted, run_dir)
        if interrupted is err:
            raise
        raise interrupted from err
    except SystemExit as err:  # its launcher ended the job: submitit's preemption hook requeues it, then exits
        record.status = "interrupted"
        record.error = f"stopped by its launcher (SystemExit: {err.code})"
        raise
    except BaseException as err:
        record.error = f"{type(err).__name__}: {err}"
        record.traceback = traceback.format_exc(limit=20)
        raise
    finally:
        record.duration_s = round(time.time() - started, 3)
        if not keep_record:
            _write_at_end(run_dir, record, None if config_written else plain)


def _continuation(run_dir: Path, plain: dict[str, Any], cfg: DictConfig) -> Continuation:
    """What this run does with an earlier attempt in its folder: ``resume=`` continues it; a training job of a
    sweep continues, skips or replaces its own; any other run starts afresh. Prints the decision, if any."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if plain.get("resume"):
        continuation = continue_run(run_dir, plain, command_line(cfg))
    elif plain.get("mode") == "train" and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        continuation = continue_job(run_dir, plain, HydraConfig.get().job.num)
        if continuation.action == "fresh":
            clear_attempt(run_dir)
    else:
        return Continuation("fresh")
    if continuation.note:
        print(continuation.note, flush=True)
    removed, freed = remove_stray_temporaries(run_dir)
    if removed:
        print(f"{run_dir}: removed {removed} partial file{'s' * (removed != 1)} ({freed / 2**20:.1f} MiB) that "
              f"killed writes left", flush=True)
    return continuation


def _continue_record(record: RunRecord, continuation: Continuation, run_dir: Path, command: list[str]) -> None:
    """A resumed run's record: the run's own overrides and method, and where this attempt took over."""
    from cnnrun.generalization import method_name

    previous = continuation.previous
    record.overrides = started_with(run_dir, previous)
    record.method = method_name(continuation.config)
    record.resumed = [*(previous.resumed or []), {
        "after_epoch": continuation.epochs_done, "at": record.started_at,
        "previous_status": previous.status, "overrides": list(command)}]


def _record_interruption(record: RunRecord, err: Interrupted, run_dir: Path) -> None:
    """An interrupted run's record (its epochs and metrics are in it already), and the folder to resume on
    ``err``."""
    epochs = record.epochs or 0
    resumable = (run_dir / LAST_CHECKPOINT).is_file()
    err.run_dir, err.epochs_done = str(run_dir), epochs
    err.resume = resume_command(run_dir) if resumable else None
    record.status = "interrupted"
    record.error = f"interrupted by {err.signal_name} after {epochs} epoch{'s' if epochs != 1 else ''}"
    record.interrupted_at = {"signal": err.signal_name, "epochs_done": epochs, "at_once": err.immediate,
                             "resume": err.resume}


def writable_run_dir(output_dir: str | os.PathLike | None) -> tuple[Path, list[str]]:
    """The run folder (created) and the job's overrides; a folder that cannot be created or written is a
    ConfigError naming it, before anything runs."""
    try:
        run_dir, overrides = run_dir_and_overrides(output_dir)
        check_writable(run_dir)
    except OSError as err:
        cause = unwritable_cause(err)
        if cause is None:
            raise
        raise ConfigError(_run_dir_key(), str(cause)) from err
    return run_dir, overrides


def _run_dir_key() -> str:
    """The setting that chose the run folder: Hydra's under the CLI, run()'s ``output_dir`` otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return "output_dir"
    return "hydra.sweep.dir" if HydraConfig.get().mode == RunMode.MULTIRUN else "hydra.run.dir"


def _write_at_end(run_dir: Path, record: RunRecord, unwritten_config: dict[str, Any] | None) -> None:
    """metrics.json, and config.yaml as far as it is known when the run stopped before writing it; a failure to
    write config.yaml does not keep metrics.json from being written."""
    try:
        if unwritten_config is not None:
            write_config(run_dir, unwritten_config)
    finally:
        record.write(run_dir)


def _summary_only(plain, model, run_dir: Path, record: RunRecord) -> dict[str, float]:
    from cnnrun.model import summarize

    summary = summarize(model, plain["data"]["input_shape"])
    write_json(run_dir / "summary.json", summary)
    print_summary(summary)
    record.params = summary["total_params"]
    record.status = "completed"
    return {}
