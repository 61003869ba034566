import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# pytest-xdist runs the tests in one process per core: each gets one torch thread, and so do the command-line runs
# its tests start; otherwise the threads of two processes spin-wait for each other on shared cores and every run
# slows down several times over (benchmarks/contention.py).
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
# In-process runs: no progress bar, so test logs stay readable.
QUIET = ["callbacks.progress_bar.refresh_rate=0"]


def run_cli(args, cwd, env=None, timeout=300):
    """Run ``python -m cnnrun <args>`` in a subprocess; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # errors as users see them
    env = dict(env or {})
    if "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):  # a test's path goes first; the checkout's stays
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], os.environ["PYTHONPATH"]])
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "cnnrun", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def jobs_by_number(sweep_dir) -> dict[int, Path]:
    """A sweep's job folders (``<num>`` or ``<num>_<what the job varies>``, conf/hydra/default.yaml) by job number."""
    found = {}
    for path in Path(sweep_dir).iterdir():
        number = re.match(r"(\d+)(_|$)", path.name)
        if path.is_dir() and number:
            found[int(number.group(1))] = path
    return found


@pytest.fixture
def quick_cfg():
    """compose() with a short, quiet training setup."""
    from cnnrun import compose

    def make(*overrides):
        return compose([*QUIET, "trainer.max_epochs=2", *overrides])

    return make
