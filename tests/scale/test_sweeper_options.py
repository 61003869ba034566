"""hydra.sweeper settings of hydra/sweeper=cnnrun_optuna (direction, study_name, storage, n_trials, n_jobs,
sampler, enqueue), run in-process: the sweeper's own loop with a stand-in launcher that scores each trial's
overrides with a function written here, instead of training. The references are Optuna's own: a study asked
directly with the same sampler and seed, and the best value by the direction."""
import math
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.cnnrun_optuna_sweeper.optuna_sweeper import CnnrunOptunaSweeper
from hydra_plugins.cnnrun_optuna_sweeper._space import search_space
from cnnrun.runfiles import write_json

PARAMS = {"optim.lr": "tag(log, interval(1e-4, 1.0))", "data.batch_size": "choice(16, 32, 64)"}


def score(lr: float, batch_size: int) -> float:
    """The stand-in objective: highest at lr = 0.01, batch size 32."""
    return -(math.log10(lr) + 2) ** 2 - abs(batch_size - 32) / 32


class Launcher:
    """Launches nothing: each job's folder gets a completed metrics.json and the job returns score(overrides)."""

    def __init__(self, sweep_dir: Path):
        self.sweep_dir, self.batches = sweep_dir, []

    def launch(self, job_overrides, initial_job_idx):
        self.batches.append(len(job_overrides))
        returns = []
        for i, overrides in enumerate(job_overrides):
            values = dict(o.split("=", 1) for o in overrides if not o.startswith("++hydra."))
            job_dir = self.sweep_dir / str(initial_job_idx + i)
            job_dir.mkdir(parents=True)
            write_json(job_dir / "metrics.json", {"status": "completed"})
            ret = JobReturn(status=JobStatus.COMPLETED, _return_value=score(float(values["optim.lr"]),
                                                                             int(values["data.batch_size"])),
                            hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(job_dir)}}}))
            returns.append(ret)
        return returns


class Loader:
    def load_sweep_config(self, master_config, sweep_overrides):  # every trial's config composes
        return None


def sweep(tmp_path, **settings):
    """A sweep with these hydra.sweeper settings; returns (the study, the launcher's batch sizes)."""
    options = {"direction": "maximize", "study_name": "options", "storage": None, "n_trials": 7, "n_jobs": 1,
               "sampler": {"name": "random", "seed": 3}, "pruner": {"name": "none"}, "params": PARAMS,
               "enqueue": [], **settings}
    sweeper = CnnrunOptunaSweeper(**options)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "runtime": {"choices": {}}}})
    sweeper.sweep_dir = tmp_path
    sweeper.hydra_context = type("Context", (), {"config_loader": Loader()})()
    sweeper.launcher = Launcher(tmp_path)
    sweeper.sweep([])
    storage = options["storage"] or f"sqlite:///{tmp_path / 'optuna.db'}"
    return optuna.load_study(study_name=options["study_name"], storage=storage), sweeper.launcher.batches


def test_the_sampler_and_its_seed_are_optunas(tmp_path):
    study, _ = sweep(tmp_path)
    reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    distributions = search_space(PARAMS, []).distributions
    expected = [reference.ask(distributions).params for _ in range(7)]
    assert [t.params for t in study.trials] == expected


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_direction_chooses_the_best_trial(tmp_path, direction):
    study, _ = sweep(tmp_path, direction=direction)
    values = [score(t.params["optim.lr"], t.params["data.batch_size"]) for t in study.trials]
    assert [t.value for t in study.trials] == values
    best = max(values) if direction == "maximize" else min(values)
    assert study.direction.name.lower() == direction and study.best_value == best
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert results.best_value == best and results.direction == direction


def test_n_trials_n_jobs_study_name_storage_and_enqueue(tmp_path):
    storage = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    first = {"optim.lr": 0.5, "data.batch_size": 64}
    study, batches = sweep(tmp_path / "sweep", study_name="named", storage=storage, n_trials=7, n_jobs=3,
                           enqueue=[first])
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "sweep" / "optuna.db").exists()
    assert study.study_name == "named" and len(study.trials) == 7
    assert batches == [3, 3, 1]  # trials launched n_jobs at a time
    assert study.trials[0].params == first  # the enqueued trial runs first
