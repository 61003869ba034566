"""The launchers' shipped settings (conf/hydra/launcher/slurm.yaml and local.yaml) reach submitit: the sbatch
header of the SLURM job array and the local executor's parameters, with every default the README lists (nothing is
submitted or started)."""
import os
import stat
from pathlib import Path

import submitit
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn
from hydra.utils import instantiate

from cnnrun.config import CONFIG_DIR, register_with_hydra


def launched_executor(tmp_path, monkeypatch, *overrides):
    """The submitit executor a 2-job sweep with this launcher would submit to (map_array intercepted)."""
    register_with_hydra()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[*overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    GlobalHydra.instance().clear()
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
    assert seen["jobs"] == 2  # one job array of the sweep's two jobs
    return seen["executor"]._executor


def fake_srun(tmp_path, monkeypatch):
    """submitit's SLURM executor checks that srun exists: one that does nothing, first on PATH."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")


def test_slurm_defaults_reach_sbatch(tmp_path, monkeypatch):
    fake_srun(tmp_path, monkeypatch)
    executor = launched_executor(tmp_path, monkeypatch, "hydra/launcher=slurm")
    script = executor._make_submission_file_text("python -m cnnrun", "uid")
    for flag in ("--time=60", "--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=1", "--cpus-per-task=8",
                 "--mem=32GB"):
        assert f"#SBATCH {flag}\n" in script, (flag, script)
    assert "--partition" not in script  # null: the cluster's default partition
    assert executor.parameters["array_parallelism"] == 256  # sbatch --array=0-(N-1)%256 when submitted
    assert Path(str(executor.folder)).parent == tmp_path / "sweep" / ".submitit"


def test_slurm_launcher_writes_the_job_script_from_the_config(tmp_path, monkeypatch):
    """hydra/launcher=slurm: the settings reach sbatch (submitit builds the script; nothing is submitted)."""
    fake_srun(tmp_path, monkeypatch)
    executor = launched_executor(tmp_path, monkeypatch, "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                 "hydra.launcher.mem_gb=16")
    script = executor._make_submission_file_text("python -m cnnrun", "uid")
    for flag in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=16GB", "--time=60",
                 "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {flag}\n" in script, (flag, script)
    assert Path(str(executor.folder)).parent == tmp_path / "sweep" / ".submitit"  # logs under the sweep folder


def test_local_defaults_reach_the_local_executor(tmp_path, monkeypatch):
    executor = launched_executor(tmp_path, monkeypatch, "hydra/launcher=local")
    parameters = executor.parameters
    assert (parameters["timeout_min"], parameters["gpus_per_node"], parameters["tasks_per_node"]) == (60, 0, 1)
    assert "cpus_per_task" not in parameters  # null: torch's default threads
    assert Path(str(executor.folder)).parent == tmp_path / "sweep" / ".submitit"
    executor = launched_executor(tmp_path, monkeypatch, "hydra/launcher=local", "hydra.launcher.cpus_per_task=3",
                                 "hydra.launcher.timeout_min=7", "hydra.launcher.gpus_per_node=2")
    assert (executor.parameters["cpus_per_task"], executor.parameters["timeout_min"],
            executor.parameters["gpus_per_node"]) == (3, 7, 2)
