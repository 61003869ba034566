"""Start-up: how long a user waits for a config error, and for the first training step.

Each measurement is a fresh ``python -m cnnrun ...`` process, timed from its launch (median of ``--repeats``):

- the import floor: ``python -c "import torch"`` and ``python -c "import pytorch_lightning"`` alone;
- config errors of each kind: a wrong type (refused by the schema while Hydra composes), a value out of range, an
  unknown name and a data set that is not on disk (:func:`cnnrun.run.check_before_imports`, before torch), a model
  that does not fit its input (built on the meta device after torch is imported), a value only torch's optimizer
  checks (after ``torch._dynamo``, which building a torch optimizer imports), all before Lightning is imported;
- the default run's first training step (``trainer.max_epochs=1``, progress bar off): ``time_to_first_step_s`` from
  metrics.json counts from ``run()``'s start; the process's time before ``run()`` (interpreter, Hydra's composition)
  is the command's wall time less ``duration_s``, an upper bound that also counts the exit after the run.

    python benchmarks/startup.py [--repeats 3]
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

ERRORS = {
    "wrong type (schema)": ["optim.lr=abc"],
    "value out of range (before torch)": ["optim.lr=-1"],
    "unknown name (before torch)": ["loss.name=focall"],
    "model does not fit its input (meta device)": ["data.input_shape=[1,2,2]"],
    "optimizer value (torch's own check)": ["optim.momentum=-1"],
    "data set not on disk (before torch)": ["data=cifar10", "data.root=nowhere"],
}


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for module in ("torch", "pytorch_lightning"):
            times = [timed([sys.executable, "-c", f"import {module}"], cwd)[0] for _ in range(args.repeats)]
            print(f"import {module}: {statistics.median(times):.2f} s")
        for what, overrides in ERRORS.items():
            times = []
            for _ in range(args.repeats):
                seconds, proc = timed([sys.executable, "-m", "cnnrun", *overrides], cwd)
                assert proc.returncode == 2, proc.stderr[-2000:]
                times.append(seconds)
            print(f"{what}: {statistics.median(times):.2f} s  ({proc.stderr.strip()})")
        first, before = [], []
        for i in range(args.repeats):
            run_dir = cwd / f"run{i}"
            seconds, proc = timed([sys.executable, "-m", "cnnrun", "trainer.max_epochs=1",
                                   "callbacks.progress_bar.refresh_rate=0", f"hydra.run.dir={run_dir}"], cwd)
            assert proc.returncode == 0, proc.stderr[-2000:]
            metrics = json.loads((run_dir / "metrics.json").read_text())
            first.append(metrics["time_to_first_step_s"])
            before.append(seconds - metrics["duration_s"])
        print(f"default run, run() start to first step: {statistics.median(first):.2f} s; before run() (and exit): "
              f"{statistics.median(before):.2f} s; command to first step: at most "
              f"{statistics.median(f + b for f, b in zip(first, before)):.2f} s")


if __name__ == "__main__":
    main()
