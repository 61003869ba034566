"""trainer.threads observed inside the jobs of a parallel sweep (hydra/launcher=joblib, n_jobs=2).

joblib's workers inherit OMP_NUM_THREADS when it is set (joblib only sets it, to cores // n_jobs, when it is not),
so the sweep runs with OMP_NUM_THREADS set to a count that is neither cores // 2 nor the explicit setting: torch
starts every worker with that count, and only cnnrun's own setting can give a job another one. A user module
imported through ``imports:`` records torch's thread count during every training forward pass of each job.
"""
import json
import os

import joblib

from tests.conftest import jobs_by_number, run_cli

PROBE = '''
"""Append torch's thread count to <THREADS_PROBE_DIR>/job<n>.txt at every training forward pass of job n."""
import os

import torch
from hydra.core.hydra_config import HydraConfig


def _record(module, inputs):
    if module.training and torch.is_grad_enabled():
        path = os.path.join(os.environ["THREADS_PROBE_DIR"], f"job{HydraConfig.get().job.num}.txt")
        with open(path, "a") as f:
            f.write(f"{torch.get_num_threads()}\\n")


torch.nn.modules.module.register_module_forward_pre_hook(_record)
'''


def test_threads_in_a_joblib_sweep_auto_and_explicit(tmp_path):
    cores = joblib.cpu_count()
    auto = max(1, cores // 2)           # cores / jobs running at once
    inherited = cores // 2 + 1          # what torch would use if cnnrun set nothing
    explicit = cores // 2 + 2
    (tmp_path / "thread_probe.py").write_text(PROBE)
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    env = {"OMP_NUM_THREADS": str(inherited), "MKL_NUM_THREADS": str(inherited), "THREADS_PROBE_DIR": str(probe_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    proc = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"trainer.threads=auto,{explicit}",
                    "imports=[thread_probe]", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.train_fraction=0.2",
                    "logger=none", "callbacks.progress_bar.refresh_rate=0"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    expected = {"trainer.threads=auto": auto, f"trainer.threads={explicit}": explicit}
    seen = {}
    jobs = jobs_by_number(sweep)
    assert sorted(jobs) == [0, 1]
    for job, job_dir in jobs.items():
        record = json.loads((job_dir / "metrics.json").read_text())
        (setting,) = [o for o in record["overrides"] if o.startswith("trainer.threads=")]
        assert record["resources"]["cores"] == cores and record["resources"]["parallel_jobs"] == 2
        assert record["resources"]["threads"] == expected[setting]
        counts = {int(line) for line in (probe_dir / f"job{job}.txt").read_text().split()}
        seen[setting] = counts
    assert seen == {setting: {threads} for setting, threads in expected.items()}  # during every training step
