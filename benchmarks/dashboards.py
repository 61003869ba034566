"""Cost of the dashboards (``logger.dashboards``) on the default run: LeNet-5 on digits, 30 epochs.

1. The whole command, as users run it: ``python -m cnnrun`` with the default dashboards against
   ``logger.dashboards=false``, in fresh processes (so first-use costs such as importing matplotlib count), repeats
   interleaved; prints the medians and the overhead.
2. In one process (steadier on a shared machine): run() with and without them, interleaved after a warm-up pair,
   and the callback's own seconds per dashboard.

    python benchmarks/dashboards.py [--repeats 3] [--epochs 30] [--progress-bar] [--skip-cli]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cli_run(extra: list[str], progress_bar: bool) -> tuple[float, float, float]:
    """Wall time and CPU time (user + system, all threads) of one ``python -m cnnrun`` command, and its run()'s own
    duration_s. CPU time is the steadier measure on a shared machine."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "cnnrun", f"hydra.run.dir={tmp}/run", *extra]
        if not progress_bar:
            args.append("callbacks.progress_bar.refresh_rate=0")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return wall, cpu, json.loads((Path(tmp) / "run" / "metrics.json").read_text())["duration_s"]


def in_process(epochs: int, repeats: int) -> tuple[list[float], list[float], list[dict[str, float]]]:
    """run() durations without and with the dashboards (interleaved, after one warm-up run of each), and the
    callback's own seconds per dashboard in each run with them."""
    import cnnrun.train.fit as fit
    from cnnrun import compose, run

    caught = []
    make = fit.make_dashboards

    def keep(cfg, logger):
        callbacks = make(cfg, logger)
        caught.extend(callbacks)
        return callbacks

    def one(extra: list[str]) -> float:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            run(compose(["callbacks.progress_bar.refresh_rate=0", f"trainer.max_epochs={epochs}", *extra]),
                output_dir=tmp)
            return json.loads((Path(tmp) / "metrics.json").read_text())["duration_s"]

    fit.make_dashboards = keep
    try:
        off, on, parts = [], [], []
        for i in range(repeats + 1):
            t_off = one(["logger.dashboards=false"])
            caught.clear()
            t_on = one([])
            if i:  # the first pair warms up
                off.append(t_off)
                on.append(t_on)
                parts.append(dict(caught[0].seconds))
        return off, on, parts
    finally:
        fit.make_dashboards = make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--progress-bar", action="store_true", help="keep the rich progress bar on")
    parser.add_argument("--skip-cli", action="store_true", help="only the in-process measurements")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if not args.skip_cli:
        commands(args)
    in_process_report(args)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (at the start: {load:.2f})")


def commands(args) -> None:
    epochs = [f"trainer.max_epochs={args.epochs}"]
    cli_run([*epochs, "logger.dashboards=false"], args.progress_bar)  # warm-up: file caches, compiled bytecode
    on, off = [], []
    for _ in range(args.repeats):
        off.append(cli_run([*epochs, "logger.dashboards=false"], args.progress_bar))
        on.append(cli_run(epochs, args.progress_bar))
    medians = {}
    for label, runs in (("dashboards off", off), ("dashboards on (defaults)", on)):
        walls, cpus, durations = zip(*runs)
        medians[label] = statistics.median(walls), statistics.median(cpus)
        print(f"{label:26s} command wall median {medians[label][0]:6.2f} s {sorted(round(w, 2) for w in walls)}"
              f"   CPU median {medians[label][1]:6.2f} s {sorted(round(c, 2) for c in cpus)}"
              f"   run() median {statistics.median(durations):6.2f} s")
    (off_wall, off_cpu), (on_wall, on_cpu) = medians.values()
    print(f"overhead of the command: wall {on_wall - off_wall:+.2f} s = {100 * (on_wall / off_wall - 1):+.1f}%, "
          f"CPU {on_cpu - off_cpu:+.2f} s = {100 * (on_cpu / off_cpu - 1):+.1f}%")


def in_process_report(args) -> None:
    off_s, on_s, parts = in_process(args.epochs, args.repeats)
    off_m, on_m = statistics.median(off_s), statistics.median(on_s)
    print(f"in-process run(): off median {off_m:.2f} s {sorted(round(v, 2) for v in off_s)}, on median {on_m:.2f} s "
          f"{sorted(round(v, 2) for v in on_s)}: overhead {on_m - off_m:+.2f} s = {100 * (on_m / off_m - 1):+.1f}%")
    names = sorted({k for p in parts for k in p}, key=lambda k: -statistics.median(p.get(k, 0.0) for p in parts))
    each = {k: statistics.median(p.get(k, 0.0) for p in parts) for k in names}
    total = statistics.median(sum(p.values()) for p in parts)
    print(f"the callback's own time (median): {total:.3f} s = {100 * total / on_m:.1f}% of run(): "
          + "  ".join(f"{k} {v:.3f} s ({100 * v / on_m:.1f}%)" for k, v in each.items()))


if __name__ == "__main__":
    main()
