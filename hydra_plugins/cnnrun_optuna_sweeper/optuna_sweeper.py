"""The Sweeper: an Optuna study whose trials are Hydra jobs (ask, launch with any launcher, tell).

Each trial is launched as job number = trial number, under the sweep folder. A job learns its trial through
``hydra.job.env_set`` and the environment it inherits (see :mod:`cnnrun.trials`), reports ``val/acc`` after every
epoch and stops when the pruner says so; the sweeper then reads the job's ``metrics.json`` and tells Optuna COMPLETE
(with the job's return value), PRUNED or FAIL. A failed trial never stops the study. After every batch of trials the
sweep folder gets ``optimization_results.yaml`` (best parameters and value) and ``trials.csv`` (every trial of the
study).

``n_trials`` is the size of the study: a sweep runs the trials that it lacks to have ``n_trials`` finished (complete
or pruned) ones, so the same command run again finishes an interrupted study (or replaces its failed trials). While
trials run, the sweeper beats Optuna's heartbeat for them (``_storage.py``): a trial of a sweep process that died is
marked FAIL by the next sweep of the study, and its parameters run again. The storage URL's password never reaches a
job's config, the console or a file (:mod:`cnnrun.masking`).
Hydra imports this module when it scans plugins: Optuna loads only when a sweep starts.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from cnnrun.atomic import write_text
from cnnrun.errors import ConfigError
from cnnrun.masking import has_credentials, mask_credentials
from cnnrun.registry import Registry

from ._space import SearchSpace, SweepConfigError, search_space
from ._storage import Heartbeat, fail_stale_trials, open_storage, quiet_optuna, storage_error
from .config import CnnrunOptunaSweeperConf

log = logging.getLogger(__name__)

# optuna.samplers classes, imported when one is used
SAMPLERS = Registry("sampler")
for _name, _cls in (("tpe", "TPESampler"), ("random", "RandomSampler"), ("cmaes", "CmaEsSampler"),
                    ("gp", "GPSampler"), ("qmc", "QMCSampler"), ("nsgaii", "NSGAIISampler")):
    SAMPLERS.register(_name, f"optuna.samplers.{_cls}")
DIRECTIONS = ("maximize", "minimize")
STORAGE_KEY = "hydra.sweeper.storage"
FINISHED = ("COMPLETE", "PRUNED")  # the states of trials that count toward n_trials


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def make_sampler(settings: dict[str, Any], key: str = "hydra.sweeper.sampler"):
    """An ``optuna.samplers`` object from the flat settings ``{name: tpe, seed: 0, ..., args: {...}}``."""
    from cnnrun.trials import settings_for

    settings = dict(settings or {})
    extra = settings.pop("args", None) or {}
    try:
        entry = SAMPLERS.get(settings.pop("name", None) or "tpe", path=f"{key}.name")
        kwargs, ignored = settings_for(entry, settings, key, extra)
        if ignored:
            log.warning(f"{key}: {', '.join(ignored)} left out: not arguments of {entry.origin}")
        return entry.builder(**kwargs)
    except ConfigError as err:
        raise SweepConfigError(str(err.path), err.message) from None
    except ImportError as err:
        raise SweepConfigError(f"{key}.name", f"sampler '{entry.name}' needs a package that is not installed: "
                                              f"{err}") from None
    except (TypeError, ValueError) as err:
        raise SweepConfigError(key, f"{entry.origin}: {err}") from None


def resumed_sampler_settings(settings: dict[str, Any], earlier: int) -> dict[str, Any]:
    """The sampler settings for a study that already has ``earlier`` trials: a seeded sampler gets a seed made from
    (its seed, ``earlier``). With its own seed again it would draw the random proposals it drew when the study began
    and run its first points a second time; so seeded, a resumed search goes on with new points and is still
    reproducible. Unseeded settings and a new study keep theirs."""
    seed = settings.get("seed")
    if not earlier or seed is None:
        return settings
    return {**settings, "seed": (int(seed) * 1_000_003 + earlier) % 2**32}


def _quoted(text: str) -> str:
    """A string as a quoted value of Hydra's override grammar (no interpolation)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${") + "'"


def _override_key(override: str) -> str:
    """The key of an override (``++hydra.sweeper.storage=...`` -> ``hydra.sweeper.storage``)."""
    return override.split("=", 1)[0].lstrip("+~")


def _finished(study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED)


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` while the block runs (jobs in this process and the workers it starts inherit
    it), then as before."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _consecutive(items: list[tuple[Any, list[str]]]) -> list[list[tuple[Any, list[str]]]]:
    """Trials in runs of consecutive numbers: each run is one launch, so that job number = trial number."""
    runs: list[list[tuple[Any, list[str]]]] = []
    for item in items:
        if runs and runs[-1][-1][0].number + 1 == item[0].number:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


class CnnrunOptunaSweeper(Sweeper):
    """``hydra/sweeper=cnnrun_optuna``; its settings: :class:`.config.CnnrunOptunaSweeperConf`."""

    def __init__(self, direction: str, study_name: str | None, storage: str | None, n_trials: int, n_jobs: int,
                 sampler: Any, pruner: Any, params: Any, enqueue: Any,
                 heartbeat_interval: int | None = CnnrunOptunaSweeperConf.heartbeat_interval,
                 grace_period: int | None = CnnrunOptunaSweeperConf.grace_period,
                 stale_trial_retries: int = CnnrunOptunaSweeperConf.stale_trial_retries) -> None:
        self.direction = str(direction)
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_trial_retries = stale_trial_retries
        self._storage = None  # Optuna's RDBStorage, opened when the sweep starts
        self.sampler_settings = dict(_plain(sampler) or {})
        self.pruner_settings = dict(_plain(pruner) or {})
        self.params = dict(_plain(params) or {})
        self.enqueue = list(_plain(enqueue) or [])
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()

    # -- settings -------------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.direction not in DIRECTIONS:
            raise SweepConfigError("hydra.sweeper.direction", f"must be maximize or minimize, got {self.direction!r}")
        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SweepConfigError(f"hydra.sweeper.{key}", f"must be a positive integer, got {value!r}")
        for key in ("heartbeat_interval", "grace_period"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SweepConfigError(f"hydra.sweeper.{key}", f"must be a positive integer (seconds) or null, got "
                                                               f"{value!r}")
        value = self.stale_trial_retries
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SweepConfigError("hydra.sweeper.stale_trial_retries", f"must be 0 or a positive integer, got "
                                                                         f"{value!r}")
        if not all(isinstance(e, dict) for e in self.enqueue):
            raise SweepConfigError("hydra.sweeper.enqueue", "must be a list of mappings from parameters to values")

    def _import_user_modules(self) -> None:
        """The config's ``imports:`` modules, which may register samplers and pruners (as they register layer types
        and losses for the jobs)."""
        from cnnrun.config import import_user_modules

        assert self.config is not None
        imports = _plain(self.config.get("imports"))
        if not (isinstance(imports, list) and all(isinstance(m, str) for m in imports)):
            return  # every job reports a malformed imports key, as a single run does
        try:
            import_user_modules(imports)
        except ConfigError as err:
            raise SweepConfigError(str(err.path), err.message) from None

    def _study_name(self) -> str:
        if self.study_name:
            return str(self.study_name)
        assert self.config is not None
        choice = self.config.hydra.runtime.choices.get("hparams_search")
        return str(choice) if choice else "cnnrun"

    def _pruner(self):
        """The pruner and its settings as the jobs rebuild it (``{name: ..., <arguments>}``)."""
        from cnnrun.trials import make_pruner, pruner_spec

        try:
            spec, ignored = pruner_spec(self.pruner_settings)
            pruner = make_pruner(spec)
        except ConfigError as err:
            raise SweepConfigError(str(err.path), err.message) from None
        if ignored:
            log.warning(f"hydra.sweeper.pruner: {', '.join(ignored)} left out: not arguments of the {spec['name']} "
                        f"pruner")
        return pruner, spec

    def _hide_password(self) -> None:
        """Keep the storage URL's password out of every job's ``.hydra/hydra.yaml`` and out of multirun.yaml: the
        launcher composes each job from the sweep's config and its recorded ``hydra`` overrides, so both get the
        masked URL (an ``${oc.env:...}`` interpolation, which holds no password, stays as it is)."""
        from omegaconf import open_dict, read_write

        if not (self.storage and has_credentials(str(self.storage))):
            return
        assert self.config is not None
        hydra = self.config.hydra
        with read_write(hydra), open_dict(hydra):
            recorded = [mask_credentials(str(o)) for o in hydra.overrides.hydra]
            if not OmegaConf.is_interpolation(hydra.sweeper, "storage"):  # set on the command line or in a file
                masked = mask_credentials(str(self.storage))
                hydra.sweeper.storage = masked
                recorded = [o for o in recorded if _override_key(o) != STORAGE_KEY]
                recorded.append(f"{STORAGE_KEY}={_quoted(masked)}")
            hydra.overrides.hydra = recorded

    def _create_study(self, space: SearchSpace, sampler, pruner, spec: dict[str, Any]):
        import optuna

        from cnnrun.trials import PRUNER_ATTR

        storage = self.storage or f"sqlite:///{self.sweep_dir / 'optuna.db'}"
        name = self._study_name()
        self._storage = open_storage(storage, self.heartbeat_interval, self.grace_period, self.stale_trial_retries)
        try:
            study = optuna.create_study(study_name=name, storage=self._storage, sampler=sampler, pruner=pruner,
                                        direction=self.direction, load_if_exists=True)
        except Exception as err:  # a database that cannot be read or written
            raise storage_error(storage, err) from None
        if study.direction.name.lower() != self.direction:
            raise SweepConfigError("hydra.sweeper.direction", f"study '{name}' in {mask_credentials(storage)} was "
                                                              f"created to {study.direction.name.lower()}, not "
                                                              f"{self.direction}")
        study.set_user_attr(PRUNER_ATTR, spec)  # the jobs build the same pruner from it
        earlier = len(study.trials)
        for i, values in enumerate(self.enqueue):
            unknown = [k for k in values if k not in space.distributions and k not in space.fixed]
            if unknown:
                raise SweepConfigError(f"hydra.sweeper.enqueue[{i}]", f"{', '.join(unknown)} not in the search space "
                                                                     f"({', '.join(space.distributions)})")
            if earlier == 0:  # the study starts with them; a resumed study has run them already
                study.enqueue_trial({k: v for k, v in values.items() if k in space.distributions})
        return study, storage

    # -- the sweep ------------------------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        from cnnrun.trials import STORAGE_ENV

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        self._check()
        self._hide_password()
        self._import_user_modules()
        space = search_space(self.params, arguments)
        if not space.distributions:
            raise SweepConfigError("hydra.sweeper.params", "the search space is empty: give at least one parameter a "
                                                           "range, e.g. optim.lr: tag(log, interval(1e-4, 0.3))")
        pruner, spec = self._pruner()
        sampler = make_sampler(self.sampler_settings)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
        study, storage = self._create_study(space, sampler, pruner, spec)
        self._fail_stale(study)
        earlier, finished = len(study.trials), _finished(study)
        if earlier:  # a resumed study: new random proposals, not its first ones again
            study.sampler = make_sampler(resumed_sampler_settings(self.sampler_settings, earlier))
        to_run = max(0, self.n_trials - finished)
        log.info(f"Optuna study '{study.study_name}' in {mask_credentials(storage)}: {earlier} earlier trials "
                 f"({finished} finished), {to_run} to run for n_trials={self.n_trials} "
                 f"({type(study.sampler).__name__}, {type(study.pruner).__name__}, {self.direction})")
        with _environment(STORAGE_ENV, storage):  # the URL reaches the jobs through the environment only
            returns = self._run_trials(study, space, storage, to_run)
        results = self._write_results(study, storage)
        states = ", ".join(f"{n} {k}" for k, n in results["states"].items())
        log.info(f"Study '{study.study_name}': {results['n_trials']} trials ({states}); results in "
                 f"{self.sweep_dir / 'optimization_results.yaml'} and trials.csv")
        if results["best_trial"] is not None:
            log.info(f"Best trial {results['best_trial']}: value {results['best_value']} with {results['best_params']}")
        missing = self.n_trials - _finished(study)
        if missing > 0:
            log.info(f"{missing} finished trials short of n_trials={self.n_trials}: run the same command again to "
                     f"add them")
        return returns

    def _run_trials(self, study, space: SearchSpace, storage: str, to_run: int) -> list[Sequence[JobReturn]]:
        """Ask for ``to_run`` trials, ``n_jobs`` at a time, launch them and tell Optuna how each ended."""
        returns: list[Sequence[JobReturn]] = []
        remaining = to_run
        while remaining > 0:
            self._fail_stale(study)
            with quiet_optuna():
                trials = [study.ask(space.distributions) for _ in range(min(self.n_jobs, remaining))]
            remaining -= len(trials)
            with Heartbeat(self._storage, [t._trial_id for t in trials], self.heartbeat_interval):
                returns += self._run_batch(study, space, storage, trials)
            self._write_results(study, storage)
        return returns

    def _run_batch(self, study, space: SearchSpace, storage: str, trials: list) -> list[Sequence[JobReturn]]:
        """Launch the trials (those whose config composes) and tell Optuna how each ended."""
        from optuna.trial import TrialState

        assert self.launcher is not None
        returns: list[Sequence[JobReturn]] = []
        told: set[int] = set()
        try:
            runnable = []
            for trial in trials:
                overrides = self._overrides(space, trial, storage, study.study_name)
                error = self._composition_error(overrides)
                if error is None:
                    runnable.append((trial, overrides))
                else:
                    job_dir = self._record_unlaunched(trial, overrides, error)
                    self._tell(study, trial, TrialState.FAIL, None, job_dir, error)
                    told.add(trial.number)
            for run in _consecutive(runnable):
                job_returns = self.launcher.launch([o for _, o in run], initial_job_idx=run[0][0].number)
                for (trial, _), ret in zip(run, job_returns):
                    self._tell(study, trial, *self._outcome(ret))
                    told.add(trial.number)
                returns.append(job_returns)
        except BaseException:  # the launcher broke (or ^C): no trial of this batch stays RUNNING
            for trial in trials:
                if trial.number not in told:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            self._write_results(study, storage)
            raise
        return returns

    def _fail_stale(self, study) -> None:
        """Trials of a sweep process that died (no heartbeat for the grace period) are marked FAIL, and their
        parameters queued again (``stale_trial_retries``)."""
        if self.heartbeat_interval is None:
            return
        for number in fail_stale_trials(study):
            retried = " (its parameters run again)" if self.stale_trial_retries > 0 else ""
            log.warning(f"trial {number}: its sweep process stopped beating (died?): marked FAIL{retried}")

    def _overrides(self, space: SearchSpace, trial, storage: str, study_name: str) -> list[str]:
        """The trial's overrides, and the job's environment (the storage named with its password masked)."""
        from cnnrun.trials import STORAGE_MASKED_ENV, STUDY_ENV, TRIAL_ENV

        return [*space.overrides(trial.params),
                f"++hydra.job.env_set.{STORAGE_MASKED_ENV}={_quoted(mask_credentials(storage))}",
                f"++hydra.job.env_set.{STUDY_ENV}={_quoted(study_name)}",
                f"++hydra.job.env_set.{TRIAL_ENV}={trial.number}"]

    def _composition_error(self, overrides: list[str]) -> str | None:
        """Why the trial's config cannot be composed (e.g. a choice of a config that does not exist), or None."""
        assert self.hydra_context is not None and self.config is not None
        try:
            self.hydra_context.config_loader.load_sweep_config(master_config=self.config,
                                                               sweep_overrides=list(overrides))
        except Exception as err:
            return mask_credentials(str(err).strip().splitlines()[0]) if str(err).strip() else type(err).__name__
        return None

    def _record_unlaunched(self, trial, overrides: list[str], error: str) -> str:
        """A trial that could not even be composed still gets its job folder's metrics.json (status failed)."""
        from cnnrun.record import RunRecord
        from cnnrun.sweep import current_launch

        job_dir = self.sweep_dir / str(trial.number)
        job_dir.mkdir(parents=True, exist_ok=True)
        task = [o for o in overrides if not o.startswith(("++hydra.", "hydra."))]
        RunRecord(status="failed", error=error, overrides=task, run_dir=str(job_dir),
                  launch=current_launch()).write(job_dir)
        print(f"error: trial {trial.number}: {error}", file=sys.stderr, flush=True)
        return str(job_dir)

    def _outcome(self, ret: JobReturn) -> tuple[Any, float | None, str | None, str | None]:
        """(state, value, job folder, error) of a finished job, from its return value and its run record."""
        from optuna.trial import TrialState

        from cnnrun.record import RunRecord

        job_dir = str(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else None
        record = RunRecord.read(job_dir) if job_dir else RunRecord(status="unfinished", error="no job folder")
        if ret.status != JobStatus.COMPLETED:
            try:
                ret.return_value  # raises the job's exception
                reason = "the job did not complete"
            except Exception as err:
                reason = f"{type(err).__name__}: {err}"
            return TrialState.FAIL, None, job_dir, (record.error if record.written else None) or reason
        if record.status == "pruned":
            return TrialState.PRUNED, None, job_dir, None
        value = ret.return_value
        if record.status == "completed" and isinstance(value, (int, float)) and math.isfinite(value):
            return TrialState.COMPLETE, float(value), job_dir, None
        error = record.error or (f"the job returned {value!r}, not a number" if record.status == "completed"
                                 else f"job status: {record.status}")
        return TrialState.FAIL, None, job_dir, error

    @staticmethod
    def _tell(study, trial, state, value: float | None, job_dir: str | None, error: str | None) -> None:
        if job_dir:
            trial.set_user_attr("job_dir", job_dir)  # absolute: the storage may serve several sweep folders
        if error:
            trial.set_user_attr("error", mask_credentials(error)[:1000])
        study.tell(trial, value if value is not None else None, state=state)

    # -- results --------------------------------------------------------------------------------------------------
    def _relative(self, path: str) -> str:
        """A job folder relative to the sweep folder when it lies inside (the usual case)."""
        try:
            return str(Path(path).relative_to(self.sweep_dir)) if path else ""
        except ValueError:
            return path

    def _write_results(self, study, storage: str) -> dict[str, Any]:
        """optimization_results.yaml (best trial) and trials.csv (every trial) in the sweep folder."""
        from optuna.trial import TrialState

        trials = study.trials
        counts = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
        results: dict[str, Any] = {"name": "optuna", "study_name": study.study_name,
                                   "storage": mask_credentials(storage),
                                   "direction": self.direction, "n_trials": len(trials),
                                   "states": {k: v for k, v in counts.items() if v},
                                   "best_trial": None, "best_value": None, "best_params": None, "best_job_dir": None}
        if counts["complete"]:
            best = study.best_trial
            results.update(best_trial=best.number, best_value=best.value, best_params=best.params,
                           best_job_dir=best.user_attrs.get("job_dir"))
        write_text(self.sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(results)))

        names = sorted({k for t in trials for k in t.params})
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["number", "state", "value", "duration_s", *names, "job_dir", "error"])
        for t in trials:
            duration = t.duration.total_seconds() if t.duration is not None else None
            writer.writerow([t.number, t.state.name, t.value, None if duration is None else round(duration, 3),
                             *[t.params.get(n) for n in names], self._relative(t.user_attrs.get("job_dir", "")),
                             t.user_attrs.get("error", "")])
        write_text(self.sweep_dir / "trials.csv", table.getvalue())
        return results
