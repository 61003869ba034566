"""Per-job overhead of a sweep whose jobs run in one process (Hydra's basic launcher).

Runs ``python -m cnnrun -m seed=1,...,N trainer.max_epochs=1`` (LeNet-5 on digits, progress bar off, TensorBoard,
dashboards and checkpoints on, as users run it) and reads every job's metrics.json. A job ends when it writes its
metrics.json (the file's time, to the millisecond) and started ``duration_s`` before. For the jobs after the first
(the first pays the imports):

- time outside ``trainer.fit``: ``duration_s - fit_s`` (config checks, data, model summary, Trainer and logger
  set-up, the test passes and their dashboards, metrics.json);
- Hydra's time between two jobs: from one job's end to the next one's start (the report's refresh after the job,
  Hydra's composition of the next job's config, its logging set-up and .hydra files);
- the overhead per job: from one job's end to the next one's end, less the next job's ``fit_s`` (the two above);
- Hydra's composition of one job's config, measured alone (Hydra's compose API, in this process). Hydra's basic
  sweeper composes every job's config twice: once for the launch (counted above) and once before the first job starts
  (it validates the whole batch), which is added to give the overhead per job with every composition.

    python benchmarks/sweep_overhead.py [--jobs 12] [override ...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def job_times(sweep: Path) -> list[dict[str, float]]:
    """Each job's start, end and fit time (seconds since the epoch), in the order the jobs ran."""
    jobs = []
    for path in sweep.glob("*/metrics.json"):
        record = json.loads(path.read_text())
        assert record["status"] == "completed", f"{path.parent.name}: {record['status']}: {record.get('error')}"
        end = path.stat().st_mtime
        jobs.append({"start": end - record["duration_s"], "end": end, "fit": record["fit_s"],
                     "duration": record["duration_s"]})
    return sorted(jobs, key=lambda j: j["end"])


def composition_time(overrides: list[str], repeats: int = 5) -> float:
    """Median time of Hydra composing one job's config (the first composition, which imports and caches, excluded)."""
    from cnnrun import compose

    compose([*overrides, "seed=1"])
    times = []
    for seed in range(2, repeats + 2):
        started = time.perf_counter()
        compose([*overrides, f"seed={seed}"])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("extra", nargs="*", help="more overrides for every job")
    args = parser.parse_args()
    overrides = ["trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0", *args.extra]
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        seeds = ",".join(str(s) for s in range(1, args.jobs + 1))
        cmd = [sys.executable, "-m", "cnnrun", "-m", f"seed={seeds}", *overrides, f"hydra.sweep.dir={sweep}"]
        load = os.getloadavg()[0]
        start = time.time()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        wall = time.time() - start
        if proc.returncode != 0:
            sys.exit(f"the sweep failed (exit status {proc.returncode}):\n{proc.stderr[-3000:]}")
        jobs = job_times(sweep)
    assert len(jobs) == args.jobs, f"{len(jobs)} of {args.jobs} jobs wrote metrics.json"
    compose_s = composition_time(overrides)
    later = jobs[1:]
    outside = [j["duration"] - j["fit"] for j in later]
    between = [j["start"] - prev["end"] for prev, j in zip(jobs, later)]
    per_job = [j["end"] - prev["end"] - j["fit"] for prev, j in zip(jobs, later)]
    print(f"{args.jobs} jobs of 1 epoch (load average {load:.2f} at the start): wall {wall:.1f} s, process start to "
          f"the first job {jobs[0]['start'] - start:.2f} s, first job {jobs[0]['duration']:.2f} s "
          f"(fit {jobs[0]['fit']:.2f} s), sweep end after the last job {wall - (jobs[-1]['end'] - start):.2f} s")
    print(f"trainer.fit per job: {spread([j['fit'] for j in later])}")
    print(f"after the first job: time outside trainer.fit per job {spread(outside)}")
    print(f"after the first job: Hydra's time between two jobs {spread(between)}")
    print(f"after the first job: overhead per job {spread(per_job)}")
    print(f"Hydra's composition of one job's config, alone: {compose_s:.3f} s; overhead per job with the sweeper's "
          f"validating composition: {statistics.median(per_job) + compose_s:.2f} s")


if __name__ == "__main__":
    main()
