"""What a run writes into its folder and how it prints: shared by every mode. Every file goes through
:func:`cnnrun.atomic.atomic_write` (crash-safe); only rank 0 of a distributed run writes. The overrides that name a
run (:mod:`cnnrun.names`) are its hyperparameters in TensorBoard's HPARAMS tab. Light module: TensorBoard and rich
load only when used.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from cnnrun.atomic import write_text
from cnnrun.distributed import is_rank_zero
from cnnrun.names import hydra_job, override_key, run_overrides, session_name


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically (a reader never sees half a file); rank 0 only."""
    if is_rank_zero():
        write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_config(run_dir: Path, plain: dict[str, Any]) -> None:
    """The resolved config, as YAML (``config.yaml``), atomically; rank 0 only."""
    if is_rank_zero():
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain)))


def print_summary(summary: dict[str, Any]) -> None:
    """The model's layer table on the console (not for the jobs of a sweep, which print one line each)."""
    if not is_rank_zero() or quiet_sweep_job():
        return
    from rich.console import Console

    from cnnrun.model import render_summary

    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough for nested block paths
        console = Console(width=140)
    console.print(render_summary(summary))


def print_final(metrics: dict[str, float | None], run_dir: Path) -> None:
    """The end of a run on the console: one table of its final metrics (4 significant digits), the run folder and
    the command that opens its dashboards (not for the jobs of a sweep, which print one line each)."""
    if not is_rank_zero() or quiet_sweep_job():
        return
    from rich.console import Console
    from rich.table import Table

    from cnnrun.names import short_number

    table = Table(title="final metrics", title_justify="left", show_edge=False, pad_edge=False)
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_row(*[short_number(v) if v is not None else "-" for v in metrics.values()])
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    console.print(f"run folder: {run_dir}\ndashboards: tensorboard --logdir {run_dir}", highlight=False,
                  soft_wrap=True)


def quiet_sweep_job() -> bool:
    """Whether this is a job of a sweep that prints nothing of its own: the sweep's report callback prints one line
    per job instead (:mod:`cnnrun.report.callback`). ``hydra.verbose`` (``hydra.verbose=cnnrun`` or ``true``) asks
    for every job's layer table and metrics as well."""
    multirun, hydra = hydra_job()
    return multirun and not hydra.verbose


# -- hyperparameters ------------------------------------------------------------------------------------------------
def flat_hparams(plain: dict[str, Any], overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """The run's hyperparameters for TensorBoard's HPARAMS tab (and the other loggers): ``method`` (the
    generalization methods, ``augment+weight_decay``; left out when none is chosen), ``seed``, and the keys of
    ``overrides`` (by default :func:`run_overrides`: what a sweep varies, a single run's command line). The values
    come from the resolved config, or from the override for a config group (``model=inception``). The config's
    constants are not hyperparameters: they stay in ``config.yaml``."""
    from cnnrun.generalization import method_name

    method = method_name(plain)
    out: dict[str, Any] = {**({"method": method} if method else {}), "seed": plain["seed"]}
    for override in run_overrides() if overrides is None else overrides:
        key = override_key(override)
        if key in ("seed", "generalization"):  # seed above; the methods are `method`
            continue
        value = _value_at(plain, key)
        out[key] = value if value is not None else override.split("=", 1)[-1]
    return out


def _value_at(plain: dict[str, Any], key: str) -> Any:
    """The resolved value at the dotted ``key`` as TensorBoard takes it (a number, text or a truth value; a list as
    text), None where ``key`` names a config group or nothing."""
    node: Any = plain
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, (list, tuple)):
        return str(node)
    return node if isinstance(node, (int, float, str, bool)) else None


def log_session(tb_logger, hparams: dict[str, Any], final: dict[str, float], run_dir: Path,
                step: int | None = None) -> None:
    """The run as one session of TensorBoard's HPARAMS tab: its hyperparameters, named by :func:`session_name`, with
    its final metrics (scalars, which the table's metric columns read). No experiment summary: TensorBoard then
    builds the table from every run under its logdir and puts the hyperparameters whose values differ first (it
    would take one run's experiment summary for all runs otherwise). Rank 0 only."""
    if not is_rank_zero():
        return
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard.summary import hparams as hparams_summaries  # as Lightning's log_hyperparams

    tb_logger.hparams.update(hparams)  # Lightning writes them to tensorboard/hparams.yaml as well
    tb_logger.log_metrics(final, step)
    _, start, end = hparams_summaries(hparams, final)
    plugin_data = start.value[0].metadata.plugin_data
    content = HParamsPluginData.FromString(plugin_data.content)
    content.session_start_info.group_name = session_name(run_dir)
    plugin_data.content = content.SerializeToString()
    writer = tb_logger.experiment._get_file_writer()  # as Lightning's log_hyperparams does
    writer.add_summary(start)
    writer.add_summary(end)
