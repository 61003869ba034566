"""A job's share of the machine in a parallel sweep: torch threads from the launcher, its own GPU."""
import pytest
import torch

from cnnrun.config import compose, to_plain
from cnnrun.errors import ConfigError
from cnnrun.train.trainer import apply_job_resources, check_trainer_config, launcher_share, plan_devices, plan_threads

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
TRAINER = to_plain(compose([]))["trainer"]  # the default trainer config, which the tests change


@pytest.mark.parametrize("launcher,cores,expected", [
    ({"_target_": JOBLIB, "n_jobs": 2}, 16, (2, None)),
    ({"_target_": JOBLIB, "n_jobs": -1}, 16, (16, None)),   # joblib: -1 = all cores
    ({"_target_": JOBLIB, "n_jobs": -2}, 16, (15, None)),   # -2 = all but one
    ({"_target_": JOBLIB, "n_jobs": -20}, 4, (1, None)),
    ({"_target_": BASIC}, 16, (1, None)),
    (None, 16, (1, None)),                                  # not a sweep
    ({"_target_": SLURM, "cpus_per_task": 6}, 64, (1, 6)),
    ({"_target_": SLURM, "cpus_per_task": None}, 64, (1, None)),
])
def test_launcher_share(launcher, cores, expected):
    assert launcher_share(launcher, cores) == expected


@pytest.mark.parametrize("setting,cores,parallel,budget,expected", [
    ("auto", 16, 4, None, 4),
    ("auto", 16, 3, None, 5),      # floor: never more threads than cores in total
    ("auto", 2, 4, None, 1),       # more jobs than cores: one thread each
    ("auto", 2, 2, None, 1),
    ("auto", 16, 1, None, None),   # one job at a time: torch's own default
    (None, 16, 1, None, None),
    ("auto", 64, 1, 6, 6),         # submitit: the CPUs given to the job
    (3, 16, 4, None, 3),           # an explicit count wins
    (3, 64, 1, 6, 3),
])
def test_thread_arithmetic(setting, cores, parallel, budget, expected):
    assert plan_threads(setting, cores, parallel, budget) == expected


@pytest.mark.parametrize("devices,accelerator,job,gpus,expected", [
    (1, "auto", 0, 4, ([0], "gpu")),
    (1, "auto", 5, 4, ([1], "gpu")),        # job number modulo the visible GPUs
    ("auto", "gpu", 3, 2, ([1], "gpu")),
    (1, "cuda", 2, 2, ([0], "cuda")),
    (2, "auto", 1, 4, (2, "auto")),         # several GPUs per job: left to Lightning
    ([3], "auto", 1, 4, ([3], "auto")),     # an explicit device
    (1, "auto", 1, 1, (1, "auto")),         # a single GPU (or a SLURM allocation of one)
    (1, "cpu", 1, 4, (1, "cpu")),
    (1, "auto", None, 4, (1, "auto")),      # not a sweep
])
def test_each_job_gets_its_own_gpu(devices, accelerator, job, gpus, expected):
    assert plan_devices(devices, accelerator, job, gpus) == expected


@pytest.mark.parametrize("threads", [0, -2, "many", 1.5, True])
def test_bad_thread_counts_are_config_errors(threads):
    with pytest.raises(ConfigError) as err:
        check_trainer_config({**TRAINER, "threads": threads})
    assert err.value.path == "trainer.threads"


def test_threads_is_not_passed_to_lightning_but_other_unknown_keys_are_errors():
    check_trainer_config({**TRAINER, "threads": 2})
    check_trainer_config({**TRAINER, "threads": "auto"})
    with pytest.raises(ConfigError, match="did you mean 'threads'"):
        check_trainer_config({**TRAINER, "thread": 2})


def test_outside_a_sweep_threads_follow_the_setting():
    before = torch.get_num_threads()
    try:
        cfg = {"trainer": {**TRAINER, "threads": "auto", "devices": 1, "accelerator": "cpu"}}
        chosen = apply_job_resources(cfg)
        assert chosen["threads"] == before and chosen["parallel_jobs"] == 1
        assert cfg["trainer"]["devices"] == 1
        cfg["trainer"]["threads"] = 1
        assert apply_job_resources(cfg)["threads"] == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
