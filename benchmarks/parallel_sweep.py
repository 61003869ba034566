"""Wall time of one sweep, its jobs run one after another or in parallel with joblib.

Runs ``python -m cnnrun -m seed=1,...,N trainer.max_epochs=E logger=none`` (LeNet-5 on digits) with Hydra's basic
launcher, with ``hydra/launcher=joblib hydra.launcher.n_jobs=P`` (each job gets cores / P torch threads:
``trainer.threads=auto``), and with joblib but every job on all cores (``trainer.threads=<cores>``: the
oversubscription that the default avoids). Prints the wall time of each and the threads each job used.

    python benchmarks/parallel_sweep.py [--jobs 4] [--parallel 2] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib


def sweep(tmp: Path, name: str, jobs: int, epochs: int, extra: list[str]) -> tuple[float, list[dict]]:
    out = tmp / name
    seeds = ",".join(str(s) for s in range(1, jobs + 1))
    cmd = [sys.executable, "-m", "cnnrun", "-m", f"seed={seeds}", f"trainer.max_epochs={epochs}", "logger=none",
           "callbacks.progress_bar.refresh_rate=0", f"hydra.sweep.dir={out}", *extra]
    start = time.time()
    subprocess.run(cmd, cwd=tmp, check=True, capture_output=True, text=True)
    wall = time.time() - start
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/metrics.json"))]
    assert len(records) == jobs and all(r["status"] == "completed" for r in records), "a job failed"
    return wall, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    cores = joblib.cpu_count()
    joblib_args = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.parallel}"]
    settings = {
        "one at a time (basic launcher)": [],
        f"joblib, {args.parallel} at once, threads=auto": joblib_args,
        f"joblib, {args.parallel} at once, threads={cores} (oversubscribed)": [*joblib_args,
                                                                              f"trainer.threads={cores}"],
    }
    print(f"{args.jobs} jobs of {args.epochs} epochs, {cores} cores")
    print("| launcher | wall s | torch threads per job | median fit_s per job |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, extra) in enumerate(settings.items()):
            wall, records = sweep(Path(tmp), f"s{i}", args.jobs, args.epochs, extra)
            threads = sorted({r["resources"]["threads"] for r in records})
            fits = sorted(r["fit_s"] for r in records)
            print(f"| {label} | {wall:.1f} | {', '.join(map(str, threads))} | {fits[len(fits) // 2]:.2f} |")


if __name__ == "__main__":
    main()
