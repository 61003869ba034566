"""Sweeps whose jobs run elsewhere: in parallel worker processes (joblib), in submitit's local mode (the SLURM path
on this machine), and the SLURM launcher's job script."""
import json
import os
import stat
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from cnnrun.config import CONFIG_DIR, register_resolvers
from tests.conftest import run_cli

TINY = ["optim.lr=0.1,-1", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_test_batches=2",
        "logger=none",
        "callbacks.progress_bar.refresh_rate=0"]


def sweep_jobs(base: Path) -> tuple[Path, dict[str, dict]]:
    sweeps = list((base / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    jobs = {p.name: json.loads((p / "metrics.json").read_text()) for p in sweeps[0].iterdir()
            if p.is_dir() and not p.name.startswith(".")}
    return sweeps[0], jobs


def check_one_failed(proc, jobs):
    """Job 0 (optim.lr=0.1) completed, job 1 (optim.lr=-1) failed; the command counted it from another process."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 jobs failed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(jobs) == ["0", "1"]
    assert jobs["0"]["status"] == "completed" and "optim.lr=0.1" in jobs["0"]["overrides"]
    assert jobs["1"]["status"] == "failed" and jobs["1"]["error"] == "optim.lr: must be a positive number, got -1"


def test_parallel_sweep_with_joblib_shares_the_cores(tmp_path):
    proc = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY], cwd=tmp_path)
    _, jobs = sweep_jobs(tmp_path)
    check_one_failed(proc, jobs)
    resources = jobs["0"]["resources"]
    assert resources["parallel_jobs"] == 2  # the threads each job gets: tests/scale/test_threads.py


def test_submitit_local_sweep_keeps_its_logs_in_the_sweep_folder(tmp_path):
    proc = run_cli(["-m", "hydra/launcher=local", "hydra.launcher.cpus_per_task=1", *TINY], cwd=tmp_path)
    sweep, jobs = sweep_jobs(tmp_path)
    check_one_failed(proc, jobs)
    assert jobs["0"]["resources"]["threads"] == 1  # the launcher's cpus_per_task
    logs = {p.name: p.read_text() for p in (sweep / ".submitit").rglob("*_log.*")}
    assert len([n for n in logs if n.endswith("_log.out")]) == 2, sorted(logs)
    assert any("error: optim.lr: must be a positive number" in text for name, text in logs.items()
               if name.endswith("_log.err"))
    assert not (tmp_path / ".submitit").exists() and not (tmp_path / "multirun").exists()


def test_slurm_launcher_writes_the_job_script_from_the_config(tmp_path, monkeypatch):
    """hydra/launcher=slurm: the settings reach sbatch (submitit builds the script; nothing is submitted)."""
    import submitit
    from hydra.core.utils import JobReturn

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit's SLURM executor checks that srun exists
    (fake_bin / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.mem_gb=16",
                                 f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    GlobalHydra.instance().clear()
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    seen = {}

    class Done:
        def results(self):
            return [JobReturn()]

    def map_array(executor, fn, *args):
        seen["executor"], seen["jobs"] = executor, len(args[0])
        return [Done() for _ in args[0]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    launcher.launch([["optim.lr=0.1"], ["optim.lr=0.01"]], initial_job_idx=0)
    executor = seen["executor"]._executor
    assert seen["jobs"] == 2
    script = executor._make_submission_file_text("python -m cnnrun", "uid")
    for flag in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=16GB", "--time=60",
                 "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {flag}\n" in script, (flag, script)
    assert Path(str(executor.folder)).parent == tmp_path / "sweep" / ".submitit"  # logs under the sweep folder


def test_sweeper_settings_errors_exit_2_with_one_line(tmp_path):
    proc = run_cli(["-m", "hparams_search=lenet5_digits", "hydra.sweeper.pruner.name=medain"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: hydra.sweeper.pruner.name: unknown pruner 'medain'; did you mean 'median'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()  # before any job, study or sweep folder

