"""Sweeps whose jobs run elsewhere: in parallel worker processes (joblib) and in submitit's local mode (the SLURM
path on this machine). The SLURM job script: tests/scale/test_launcher_options.py."""
import json
from pathlib import Path

from tests.conftest import jobs_by_number, run_cli

TINY = ["optim.lr=0.1,-1", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_test_batches=2",
        "logger=none",
        "callbacks.progress_bar.refresh_rate=0"]


def sweep_jobs(base: Path) -> tuple[Path, dict[int, dict]]:
    sweeps = list((base / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    jobs = {num: json.loads((p / "metrics.json").read_text()) for num, p in jobs_by_number(sweeps[0]).items()}
    return sweeps[0], jobs


def check_one_failed(proc, jobs):
    """Job 0 (optim.lr=0.1) completed, job 1 (optim.lr=-1) failed; the command counted it from another process."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 jobs failed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(jobs) == [0, 1]
    assert jobs[0]["status"] == "completed" and "optim.lr=0.1" in jobs[0]["overrides"]
    assert jobs[1]["status"] == "failed" and jobs[1]["error"] == "optim.lr: must be a positive number, got -1.0"


def test_parallel_sweep_with_joblib_shares_the_cores(tmp_path):
    proc = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY], cwd=tmp_path)
    _, jobs = sweep_jobs(tmp_path)
    check_one_failed(proc, jobs)
    resources = jobs[0]["resources"]
    assert resources["parallel_jobs"] == 2  # the threads each job gets: tests/scale/test_threads.py


def test_submitit_local_sweep_keeps_its_logs_in_the_sweep_folder(tmp_path):
    proc = run_cli(["-m", "hydra/launcher=local", "hydra.launcher.cpus_per_task=1", *TINY], cwd=tmp_path)
    sweep, jobs = sweep_jobs(tmp_path)
    check_one_failed(proc, jobs)
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

