"""The Hydra callback of a sweep (``conf/hydra/default.yaml``): after every job, its one console line and the report's
tables; at the end of the sweep, the figure, the ranked comparison on the console and the report's paths.
"""
from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from cnnrun.record import RunRecord
from cnnrun.report import build_report, print_report
from cnnrun.report.tables import job_line


class SweepReport(Callback):
    """One line per job and the tables after every job (also in worker processes); the figure and the ranked
    comparison at the end of the sweep."""

    def on_multirun_start(self, config, **kwargs) -> None:
        print(f"sweep folder: {config.hydra.sweep.dir}", flush=True)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        hydra = _job_hydra_config(job_return)
        if hydra is None or hydra.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(hydra.runtime.output_dir)  # absolute: right even when jobs change their working folder
        print(job_line(job_dir.name, RunRecord.read(job_dir)), flush=True)
        try:
            build_report(job_dir.parent, figure=False)
        except Exception as err:  # a report must never fail a job
            print(f"warning: comparison report not updated: {err}", file=sys.stderr)

    def on_multirun_end(self, config, **kwargs) -> None:
        finish_sweep(Path(config.hydra.sweep.dir))


def finish_sweep(sweep_dir: Path) -> None:
    """The end of a sweep: the whole report (with its figure), then the ranked comparison and the report's paths on
    the console. Hydra calls it when every job has run (:meth:`SweepReport.on_multirun_end`); for a sweep that a
    job's error ended early, whoever caught the error may call it."""
    if sweep_dir.is_dir():
        print_report(sweep_dir, build_report(sweep_dir, warn=True))


def _job_hydra_config(job_return):
    """Hydra's config of the job that just ended (None outside Hydra)."""
    if job_return.hydra_cfg is not None:
        return job_return.hydra_cfg.hydra
    return HydraConfig.get() if HydraConfig.initialized() else None
