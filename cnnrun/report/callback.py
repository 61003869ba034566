"""The Hydra callback that keeps a sweep's comparison report current (``conf/hydra/default.yaml``)."""
from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from cnnrun.report import build_report


class SweepReport(Callback):
    """The tables after every job (also from worker processes), the figure at the end of the sweep."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        sweep_dir = _sweep_dir()
        if sweep_dir is not None:
            try:
                build_report(sweep_dir, figure=False)
            except Exception as err:  # a report must never fail a job
                print(f"warning: comparison report not updated: {err}", file=sys.stderr)

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.exists():
            out = build_report(sweep_dir, warn=True)
            print(f"comparison: {out['md']}")


def _sweep_dir() -> Path | None:
    """The sweep folder of the job that just ended; None outside a sweep."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    if hc.mode != RunMode.MULTIRUN:
        return None
    return Path(hc.sweep.dir)
