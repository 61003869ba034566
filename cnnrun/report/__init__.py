"""The comparison report of a sweep, built from its jobs' run folders: ``python -m cnnrun.report <sweep_dir>``.

Writes into the sweep folder:

- ``comparison.csv``: one row per job (overrides, status, error, every final metric, parameters, duration, the
  fingerprint of its effective config and the configurations that resolved to the same one);
- ``comparison.md``: one row per configuration (the job's method and its overrides without ``seed``, labelled by
  what varies across the sweep) aggregated over seeds, ranked by mean test accuracy, numbers to 4 significant
  digits: mean +- std of test accuracy (the value itself for a single seed), of the generalization gap and of test
  loss, and the difference in test accuracy to a reference with a 95% confidence interval and a p-value (a paired
  t-test when both have the same seeds, Welch's t-test otherwise). The
  reference is ``baseline`` (with the same other overrides) in a comparison of generalization methods, and the
  configuration of the sweep's first job (the first value of every swept parameter) in any other sweep. Two
  differently labelled configurations whose jobs resolved to the same effective config (``config.yaml`` without
  the seed and run-specific keys) are flagged: their difference is no difference. Failed, pruned and unfinished
  jobs are listed with their error, never dropped;
- ``comparison.png``: test accuracy per configuration with error bars, and validation-accuracy curves per epoch,
  legible with many long configuration names.

It reads every job's ``metrics.json`` (and, for jobs that died before writing their history, their TensorBoard
events), so it works for jobs that ran in other processes and for partial or crashed sweeps. As a Hydra callback
(:class:`cnnrun.report.callback.SweepReport`, in ``conf/hydra/default.yaml``) it refreshes the table files after every
job and draws the figure at the end of the sweep, when it also prints the ranked table on the console
(:func:`print_report`).

Modules, in the order the data flow through them: ``runs`` (reading run folders), ``stats`` (statistics),
``tables`` (csv, markdown and the console), ``plots`` (the figure), ``callback`` (the Hydra callback); ``gallery`` is
``mode=gallery``. Light package: the statistics and plotting libraries load only when needed, and the report knows
nothing of models or training (only run folders).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from cnnrun.atomic import write_text
from cnnrun.report.plots import plot
from cnnrun.report.runs import group_jobs, read_sweep
from cnnrun.report.tables import csv_text, identical_warnings, markdown_text, rich_table


def build_report(sweep_dir: str | os.PathLike, *, figure: bool = True, warn: bool = False) -> dict[str, Path]:
    """Write comparison.csv, comparison.md (and comparison.png) into ``sweep_dir``; return their paths. ``warn``:
    also print the warnings about configurations that differ in name only on stderr."""
    sweep_dir = Path(sweep_dir)
    jobs, common = read_sweep(sweep_dir)
    groups = group_jobs(jobs)
    out = {"csv": sweep_dir / "comparison.csv", "md": sweep_dir / "comparison.md"}
    # atomic: a killed process leaves the previous complete table, and jobs in other processes may rebuild the
    # report at the same time (each writes its own temporary file)
    write_text(out["csv"], csv_text(jobs, groups))
    write_text(out["md"], markdown_text(sweep_dir, jobs, groups, common))
    if figure and jobs:
        out["png"] = sweep_dir / "comparison.png"
        plot(out["png"], groups)
    if warn:
        for line in identical_warnings(groups):
            print(f"warning: {line.replace('`', '')}", file=sys.stderr)
    return out


def print_report(sweep_dir: str | os.PathLike, out: dict[str, Path]) -> None:
    """The ranked comparison (comparison.md's table) on the console, then the report's files (``out``, from
    :func:`build_report`) and the command that opens the sweep in TensorBoard."""
    from rich.console import Console  # rich: only when a sweep ends

    sweep_dir = Path(sweep_dir)
    jobs, _ = read_sweep(sweep_dir)
    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough for long configuration names
        console = Console(width=140)
    console.print(rich_table(sweep_dir, group_jobs(jobs)))
    print(f"report: {', '.join(str(p) for p in out.values())}")
    print(f"dashboards: tensorboard --logdir {sweep_dir}", flush=True)
