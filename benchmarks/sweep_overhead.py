"""Per-job overhead of a sweep whose jobs run in one process (Hydra's basic launcher).

Runs ``python -m cnnrun -m seed=1,...,N trainer.max_epochs=1`` (LeNet-5 on digits, progress bar off, TensorBoard
and checkpoints on, as users run it) and reads every job's metrics.json. A job's overhead is its time outside
``trainer.fit`` (``duration_s - fit_s``: config checks, data, model summary, Trainer and logger set-up, test,
report); the sweep's overhead per job also counts Hydra's time between jobs: (wall time - process start - sum of
fit_s) / N, where the process start is the time to the first job's start.

    python benchmarks/sweep_overhead.py [--jobs 12]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("extra", nargs="*", help="more overrides for every job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        seeds = ",".join(str(s) for s in range(1, args.jobs + 1))
        cmd = [sys.executable, "-m", "cnnrun", "-m", f"seed={seeds}", "trainer.max_epochs=1",
               "callbacks.progress_bar.refresh_rate=0", f"hydra.sweep.dir={sweep}", *args.extra]
        start = time.time()
        subprocess.run(cmd, cwd=tmp, check=True, capture_output=True, text=True)
        wall = time.time() - start
        records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(records) == args.jobs and all(r["status"] == "completed" for r in records), "a job failed"
    first_start = min(datetime.fromisoformat(r["started_at"]).timestamp() for r in records)
    fit = [r["fit_s"] for r in records]
    outside = [r["duration_s"] - r["fit_s"] for r in records]
    startup = first_start - start
    print(f"{args.jobs} jobs of 1 epoch: wall {wall:.1f} s, process start to the first job {startup:.1f} s "
          f"(second resolution)")
    print(f"trainer.fit per job: median {statistics.median(fit):.2f} s")
    print(f"time outside trainer.fit per job: first {outside[0]:.2f} s, median of the others "
          f"{statistics.median(outside[1:]):.2f} s")
    print(f"sweep overhead per job, Hydra included: {(wall - startup - sum(fit)) / args.jobs:.2f} s")


if __name__ == "__main__":
    main()
