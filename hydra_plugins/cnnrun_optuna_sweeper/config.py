"""The sweeper's structured config, registered in Hydra's ConfigStore as ``hydra/sweeper=cnnrun_optuna``.

Sampler and pruner settings are flat, typed fields (a typo is an error, switching ``name`` needs no ``+``): the
arguments that the chosen class does not take are left out (with a warning), so that a search config can set the
median pruner's arguments and the command line can still switch to ``hydra.sweeper.pruner.name=hyperband``.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    # tpe | random | cmaes | gp | qmc | nsgaii (optuna.samplers.<Name>Sampler)
    name: str = "tpe"
    seed: Optional[int] = None
    # tpe, cmaes, gp: trials sampled at random before the model is used
    n_startup_trials: Optional[int] = None
    # tpe: model the parameters jointly
    multivariate: Optional[bool] = None
    # tpe: with parallel trials (n_jobs > 1), do not propose the points of running trials again
    constant_liar: Optional[bool] = None
    # any other keyword argument of the sampler class
    args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PrunerConf:
    # none | median | percentile | hyperband | successive_halving | threshold (optuna.pruners.<Name>Pruner)
    name: str = "none"
    # median, percentile: no pruning until this many trials have completed
    n_startup_trials: Optional[int] = None
    # median, percentile, threshold: no pruning before this step (epoch) of a trial
    n_warmup_steps: Optional[int] = None
    # median, percentile, threshold: check every this many steps
    interval_steps: Optional[int] = None
    # median, percentile: trials that must have reported a step before it can prune there
    n_min_trials: Optional[int] = None
    # percentile: prune below this percentile of the other trials (maximize: the lowest ones)
    percentile: Optional[float] = None
    # hyperband, successive_halving: epochs every trial gets ("auto" for successive_halving)
    min_resource: Optional[Any] = None
    # hyperband: the most epochs of a trial (int, or "auto": the longest trial so far)
    max_resource: Optional[Any] = None
    # hyperband, successive_halving: 1 / reduction_factor of the trials are promoted to each next rung
    reduction_factor: Optional[int] = None
    # hyperband, successive_halving
    bootstrap_count: Optional[int] = None
    # successive_halving
    min_early_stopping_rate: Optional[int] = None
    # threshold: prune a trial whose value leaves [lower, upper]
    lower: Optional[float] = None
    upper: Optional[float] = None


@dataclass
class CnnrunOptunaSweeperConf:
    """Settings under ``hydra.sweeper`` (each one can be overridden: ``hydra.sweeper.n_trials=50``)."""

    _target_: str = "hydra_plugins.cnnrun_optuna_sweeper.optuna_sweeper.CnnrunOptunaSweeper"

    # maximize or minimize the job's return value (python -m cnnrun returns the last epoch's val/acc)
    direction: str = "maximize"
    # the study; null: the hparams_search config's name (else "cnnrun")
    study_name: Optional[str] = None
    # Optuna storage URL (an RDB one: sqlite, postgresql, mysql); null: sqlite:///<sweep dir>/optuna.db. A study with
    # the same name in the same storage is continued (re-run with the same hydra.sweep.dir, or the same storage and
    # study_name, to resume). A password in it is masked everywhere cnnrun shows or records the URL; to keep it off the
    # command line too: hydra.sweeper.storage='${oc.env:CNNRUN_OPTUNA_STORAGE}'
    storage: Optional[str] = None
    # the study's size: finished (complete or pruned) trials to reach. A sweep runs the trials the study lacks, so the
    # same command again finishes an interrupted study or replaces its failed trials; raise it to extend a study
    n_trials: int = 20
    # trials asked for and launched together: set it to the launcher's parallelism (hydra.launcher.n_jobs)
    n_jobs: int = 1
    sampler: SamplerConf = field(default_factory=SamplerConf)
    # each job reports val/acc after every epoch; the pruner stops unpromising trials (status pruned)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # the search space, in Hydra's sweep grammar: key: interval(a, b) | tag(log, interval(a, b)) |
    # int(interval(a, b)) | choice(a, b, ...) | range(start, stop[, step]) | a fixed value
    params: Dict[str, Any] = field(default_factory=dict)
    # a trial of a sweep process that died (killed, out of memory, preempted) must not stay RUNNING: while trials run,
    # the sweeper records a heartbeat for each every heartbeat_interval seconds (null: no heartbeats), and a sweep of
    # the study marks FAIL each trial whose last heartbeat is older than grace_period seconds (null: twice the interval)
    heartbeat_interval: Optional[int] = 10
    grace_period: Optional[int] = None
    # such a trial's parameters run again, as a new trial, up to this many times (0: the trial only fails)
    stale_trial_retries: int = 1
    # trials that a new study evaluates first (e.g. the defaults), each a mapping of params to values (a value fixed on
    # the command line wins); a resumed study does not run them again
    enqueue: List[Any] = field(default_factory=list)


ConfigStore.instance().store(group="hydra/sweeper", name="cnnrun_optuna", node=CnnrunOptunaSweeperConf,
                             provider="cnnrun")
