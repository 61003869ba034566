"""Sweeps whose jobs run elsewhere: in parallel worker processes (joblib) and in submitit's local mode (the SLURM
path on this machine). The SLURM job script: tests/scale/test_launcher_options.py.

trainer.threads is observed inside the jobs of the joblib sweep. joblib's workers inherit OMP_NUM_THREADS when it is
set (joblib only sets it, to cores // n_jobs, when it is not), so the sweep runs with OMP_NUM_THREADS set to a count
that is neither cores // 2 nor the explicit setting: torch starts every worker with that count, and only cnnrun's own
setting can give a job another one. A user module imported through ``imports:`` records torch's thread count during
every training forward pass of each job.
"""
import json
import os
from pathlib import Path

import joblib
import pytest

from tests.conftest import jobs_by_number, run_cli

TINY = ["optim.lr=0.1,-1", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_test_batches=2",
        "logger=none",
        "callbacks.progress_bar.refresh_rate=0"]
LR_ERROR = "optim.lr: must be a positive number, got -1.0"

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
CORES = joblib.cpu_count()
AUTO = max(1, CORES // 2)           # cores / jobs running at once
INHERITED = CORES // 2 + 1          # what torch would use if cnnrun set nothing
EXPLICIT = CORES // 2 + 2


def sweep_jobs(base: Path) -> tuple[Path, dict[int, dict]]:
    sweeps = list((base / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    jobs = {num: json.loads((p / "metrics.json").read_text()) for num, p in jobs_by_number(sweeps[0]).items()}
    return sweeps[0], jobs


def check_failed_jobs(proc, jobs, count):
    """``count`` jobs; those with optim.lr=0.1 completed, those with optim.lr=-1 (half of them) failed; the command
    counted the failures, which happened in other processes."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = count // 2
    assert f"{failed} of {count} jobs failed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(jobs) == list(range(count))
    for record in jobs.values():
        if "optim.lr=0.1" in record["overrides"]:
            assert record["status"] == "completed", record["error"]
        else:
            assert "optim.lr=-1" in record["overrides"]
            assert record["status"] == "failed" and record["error"] == LR_ERROR
    assert sum(r["status"] == "failed" for r in jobs.values()) == failed


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory):
    """One joblib sweep (n_jobs=2) read by the tests below: 2 learning rates (0.1, and -1, which fails) x
    trainer.threads=auto,<explicit>, with OMP_NUM_THREADS inherited and the thread probe imported; (the CLI's result,
    its folder, the probe's folder)."""
    base = tmp_path_factory.mktemp("joblib")
    (base / "thread_probe.py").write_text(PROBE)
    probe_dir = base / "probe"
    probe_dir.mkdir()
    env = {"OMP_NUM_THREADS": str(INHERITED), "MKL_NUM_THREADS": str(INHERITED), "THREADS_PROBE_DIR": str(probe_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(base), os.environ.get("PYTHONPATH")]))}
    proc = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY,
                    f"trainer.threads=auto,{EXPLICIT}", "imports=[thread_probe]", "trainer.limit_val_batches=1",
                    "data.train_fraction=0.2"], cwd=base, env=env)
    return proc, base, probe_dir


def test_parallel_sweep_with_joblib_shares_the_cores(joblib_sweep):
    proc, base, _ = joblib_sweep
    _, jobs = sweep_jobs(base)
    check_failed_jobs(proc, jobs, 4)
    for record in jobs.values():
        if record["status"] == "completed":
            assert record["resources"]["parallel_jobs"] == 2


def test_threads_in_a_joblib_sweep_auto_and_explicit(joblib_sweep):
    _, base, probe_dir = joblib_sweep
    sweep, _ = sweep_jobs(base)
    expected = {"trainer.threads=auto": AUTO, f"trainer.threads={EXPLICIT}": EXPLICIT}
    seen = {}
    for job, job_dir in jobs_by_number(sweep).items():
        record = json.loads((job_dir / "metrics.json").read_text())
        if record["status"] != "completed":  # the failing learning rate: it stops before training
            continue
        (setting,) = [o for o in record["overrides"] if o.startswith("trainer.threads=")]
        assert setting not in seen  # one completed job per setting
        assert record["resources"]["cores"] == CORES and record["resources"]["parallel_jobs"] == 2
        assert record["resources"]["threads"] == expected[setting]
        seen[setting] = {int(line) for line in (probe_dir / f"job{job}.txt").read_text().split()}
    assert seen == {setting: {threads} for setting, threads in expected.items()}  # during every training step


def test_submitit_local_sweep_keeps_its_logs_in_the_sweep_folder(tmp_path):
    proc = run_cli(["-m", "hydra/launcher=local", "hydra.launcher.cpus_per_task=1", *TINY], cwd=tmp_path)
    sweep, jobs = sweep_jobs(tmp_path)
    check_failed_jobs(proc, jobs, 2)
    assert jobs[0]["resources"]["threads"] == 1  # the launcher's cpus_per_task
    logs = {p.name: p.read_text() for p in (sweep / ".submitit").rglob("*_log.*")}
    assert len([n for n in logs if n.endswith("_log.out")]) == 2, sorted(logs)
    assert any("error: optim.lr: must be a positive number" in text for name, text in logs.items()
               if name.endswith("_log.err"))
    assert not (tmp_path / ".submitit").exists() and not (tmp_path / "multirun").exists()


def test_sweeper_settings_errors_exit_2_with_one_line(tmp_path):
    proc = run_cli(["-m", "hparams_search=lenet5_digits", "hydra.sweeper.pruner.name=medain"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: hydra.sweeper.pruner.name: unknown pruner 'medain'; did you mean 'median'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()  # before any job, study or sweep folder
