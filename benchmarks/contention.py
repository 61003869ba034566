"""cnnrun on a shared machine: training time with 0, 2 and 4 busy CPU processes beside it, against a plain PyTorch
loop under the same load, paired in one run.

Every measurement is a fresh process (the OpenMP settings only take effect before torch is imported), started while
the busy processes (one Python spin loop each) run. cnnrun runs as a user runs it, ``python -m cnnrun`` (its time is
``fit_s`` from metrics.json: ``trainer.fit``); the plain loop is benchmarks/overhead.py's, with one thread and with
torch's default, the best of which is its floor. The fair-share slowdown of a job whose threads fill the machine's
``c`` cores, with ``k`` busy single-thread processes beside it, is (c + k) / c (every runnable thread gets an equal
share of the cores); the target is cnnrun's slowdown no worse than the plain loop's best and within 1.3x of the fair
share.

    python benchmarks/contention.py [--busy 0 2 4] [--repeats 2] [--epochs 10] [--workload default nin]
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

ROOT = Path(__file__).resolve().parent.parent
# model and data of each workload (the plain loop trains the same model on the same data)
WORKLOADS = {
    "default": [],  # LeNet-5 on digits
    "nin": ["model=nin", "model.width=0.5", "data=synthetic", "data.input_shape=[3,32,32]", "data.num_samples=512",
            "data.batch_size=64"],
}
# cnnrun as the user runs it, and with the mechanisms this benchmark compares (an environment, extra overrides)
CNNRUN = {
    "cnnrun": ({}, []),
    "cnnrun, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "cnnrun, threads=1": ({}, ["trainer.threads=1"]),
}


def _busy(k: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def cnnrun_cli(workload: str, epochs: int, env: dict[str, str], extra: list[str]) -> float:
    """``fit_s`` of ``python -m cnnrun`` with the overhead benchmark's settings for ``workload``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from overhead import overrides

    args = [a for a in overrides(epochs, False, WORKLOADS[workload]) if not a.startswith("trainer.threads=")]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "cnnrun", *args, "logger=none", *extra, f"hydra.run.dir={tmp}"],
                       cwd=tmp, env=_env(env), check=True, capture_output=True)
        return json.loads((Path(tmp) / "metrics.json").read_text())["fit_s"]


def plain(workload: str, epochs: int, threads: int | None) -> float:
    """The plain loop's time, in a fresh process with ``threads`` torch threads (None: torch's default)."""
    code = ("import sys, torch; sys.path.insert(0, 'benchmarks'); from overhead import plain_loop; "
            f"{'torch.set_num_threads(%d); ' % threads if threads else ''}"
            f"print(plain_loop({epochs}, workload={WORKLOADS[workload]!r}).total)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env({}), check=True, capture_output=True,
                         text=True).stdout
    return float(out.strip().splitlines()[-1])


def measure(workload: str, epochs: int) -> dict[str, float]:
    times = {"plain, 1 thread": plain(workload, epochs, 1), "plain, torch's threads": plain(workload, epochs, None)}
    for name, (env, extra) in CNNRUN.items():
        times[name] = cnnrun_cli(workload, epochs, env, extra)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workload", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, load before: {os.getloadavg()[0]:.2f}; {args.epochs} epochs, {args.repeats} repeats")
    for workload in args.workload:
        quiet: dict[str, float] = {}
        print(f"\n## {workload}\n\n| busy | fair share | " + " | ".join(["plain, 1 thread", "plain, torch's threads",
                                                                          *CNNRUN]) + " |")
        print("|---" * (2 + 2 + len(CNNRUN)) + "|")
        for k in args.busy:
            procs = _busy(k)
            try:
                time.sleep(1.0)
                runs = [measure(workload, args.epochs) for _ in range(args.repeats)]
            finally:
                for p in procs:
                    p.kill()
            med = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
            if k == 0:
                quiet = med
            fair = (cores + k) / cores
            # each column: the median time, and its slowdown against the quiet machine's best plain loop
            best_quiet = min(quiet["plain, 1 thread"], quiet["plain, torch's threads"])
            cells = [f"{med[n]:.2f} s ({med[n] / best_quiet:.2f}x)" for n in med]
            print(f"| {k} | {fair:.2f}x | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
