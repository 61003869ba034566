"""A job's share of the machine in a parallel sweep: torch threads from the launcher, its own GPU."""
import pytest
import torch

from cnnrun.config import compose, to_plain
from cnnrun.errors import ConfigError
from cnnrun.train import trainer as trainer_module
from cnnrun.train.trainer import (apply_job_resources, busy_cpus, check_trainer_config, launcher_share, plan_devices,
                                  plan_threads)

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


@pytest.mark.parametrize("setting,cores,parallel,budget,busy,expected", [
    ("auto", 2, 1, None, 0.0, None),    # a quiet machine: torch's default
    ("auto", 2, 1, None, 0.4, None),    # a blip is not a busy core
    ("auto", 2, 1, None, 1.0, 1),       # one core taken by another process: one thread
    ("auto", 2, 1, None, 4.0, 1),       # more busy processes than cores: still one
    ("auto", 16, 1, None, 3.0, 13),
    ("auto", 16, 4, None, 8.0, 4),      # a parallel sweep's share is its own rule
    ("auto", 64, 1, 6, 60.0, 6),        # so is a submitit job's budget
    (2, 2, 1, None, 2.0, 2),            # an explicit count wins
    (None, 2, 1, None, 2.0, None),
])
def test_auto_threads_leave_the_busy_cores_alone(setting, cores, parallel, budget, busy, expected):
    assert plan_threads(setting, cores, parallel, budget, busy) == expected


@pytest.mark.parametrize("lines,expected", [
    (["0.50 0.40 0.30 1/250 999"] * 5, 0.0),
    (["2.10 1.50 0.30 3/250 999"] * 5, 2.0),
    (["1 1 1 3/250 9", "1 1 1 1/250 9", "1 1 1 3/250 9", "1 1 1 4/250 9", "1 1 1 3/250 9"], 2.0),  # the median
])
def test_busy_cpus_reads_the_kernels_runnable_count_less_this_thread(tmp_path, monkeypatch, lines, expected):
    readings = iter(lines)
    path = tmp_path / "loadavg"

    def read_text(self, *args, **kwargs):
        return next(readings) if self == path else original(self, *args, **kwargs)

    original = type(path).read_text
    monkeypatch.setattr(type(path), "read_text", read_text)
    assert busy_cpus(samples=5, interval_s=0, loadavg=str(path)) == expected


def test_busy_cpus_is_zero_where_the_count_cannot_be_read(tmp_path):
    assert busy_cpus(samples=2, interval_s=0, loadavg=str(tmp_path / "absent")) == 0.0


def test_a_busy_machine_gives_an_auto_job_fewer_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(trainer_module, "busy_cpus", lambda: 64.0)
    try:
        chosen = apply_job_resources({"trainer": {**TRAINER, "threads": "auto", "devices": 1, "accelerator": "cpu"}})
        assert chosen["threads"] == 1 == torch.get_num_threads() and chosen["busy_cpus"] == 64.0
    finally:
        torch.set_num_threads(before)


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


def test_outside_a_sweep_threads_follow_the_setting(monkeypatch):
    monkeypatch.setattr(trainer_module, "busy_cpus", lambda: 0.0)  # as on a quiet machine
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
