"""The contract between the Optuna sweeper (``hydra/sweeper=cnnrun_optuna``) and the jobs it launches: the
environment variables that tell a job which trial it runs, and the pruners (``hydra.sweeper.pruner``).

The sweeper sets most variables for the job only (Hydra's ``hydra.job.env_set``, so they reach jobs in worker processes
and on cluster nodes): the study's name, the trial number and the storage URL with its password masked, which names
the storage in the job's recorded config. The URL itself, password included, is in no config: the sweeper puts it in
its own environment (``CNNRUN_OPTUNA_STORAGE``), which the jobs inherit (in-process, joblib workers, submitit; SLURM
exports the submitting environment unless told not to). The study's pruner settings are stored with the study (user
attribute ``cnnrun.pruner``), so every job prunes with the sweeper's pruner (``cnnrun/train/pruning.py``). Light
module: Optuna loads only when a pruner is built.
"""
from __future__ import annotations

import os
from typing import Any

from cnnrun.errors import ConfigError
from cnnrun.masking import has_credentials, mask_credentials
from cnnrun.registry import Entry, Registry

STORAGE_ENV = "CNNRUN_OPTUNA_STORAGE"  # the storage URL, inherited from the sweeper's environment
STORAGE_MASKED_ENV = "CNNRUN_OPTUNA_STORAGE_MASKED"  # the same with its password masked, set for each job
STUDY_ENV = "CNNRUN_OPTUNA_STUDY"
TRIAL_ENV = "CNNRUN_OPTUNA_TRIAL"
PRUNER_ATTR = "cnnrun.pruner"
MONITOR = "val/acc"  # the job's objective (what ``python -m cnnrun`` returns to the sweeper), reported per epoch

# pruners that judge a trial by its per-epoch values (optuna.pruners classes, imported when one is used)
PRUNERS = Registry("pruner")
for _name, _cls in (("none", "NopPruner"), ("median", "MedianPruner"), ("percentile", "PercentilePruner"),
                    ("hyperband", "HyperbandPruner"), ("successive_halving", "SuccessiveHalvingPruner"),
                    ("threshold", "ThresholdPruner")):
    PRUNERS.register(_name, f"optuna.pruners.{_cls}")


def settings_for(entry: Entry, settings: dict[str, Any], key: str,
                 extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Keyword arguments of ``entry`` from flat, typed settings (null: not set) and ``extra`` (a free-form ``args``
    mapping at ``<key>.args``): the set settings that it takes and every key of ``extra``, which must be an argument;
    and the names of the set settings it does not take (left out)."""
    kwargs, ignored = entry.split({k: v for k, v in settings.items() if v is not None})
    kwargs.update(extra or {})
    entry.check_arguments(kwargs, f"{key}.args")  # only a key of extra can be unknown here
    return kwargs, ignored


def _pruner(name: Any, key: str) -> Entry:
    return PRUNERS.get("none" if name is None else name, path=f"{key}.name")


def pruner_spec(settings: dict[str, Any] | None, key: str = "hydra.sweeper.pruner") -> tuple[dict[str, Any], list[str]]:
    """The pruner to use, ``{name: ..., <its arguments>}``, from the sweeper's flat settings; and the settings that
    the chosen pruner does not take (so a config can switch pruners without clearing the other one's settings)."""
    settings = dict(settings or {})
    entry = _pruner(settings.pop("name", None), key)
    kwargs, ignored = settings_for(entry, settings, key)
    return {"name": entry.name, **kwargs}, ignored


def make_pruner(spec: dict[str, Any] | None, key: str = "hydra.sweeper.pruner"):
    """An ``optuna.pruners`` object from ``{name: median, n_startup_trials: 5, ...}`` (None: no pruning); every set
    (non-null) key must be an argument of the pruner."""
    spec = {k: v for k, v in (spec or {}).items() if v is not None}
    entry = _pruner(spec.pop("name", None), key)
    entry.check_arguments(spec, key)
    try:
        return entry.builder(**spec)
    except (TypeError, ValueError) as err:
        raise ConfigError(key, f"{entry.origin}: {err}") from None


def trial_from_env() -> tuple[str, str, int] | None:
    """(storage URL, study name, trial number) when this job runs an Optuna trial, else None."""
    study, number = (os.environ.get(k) for k in (STUDY_ENV, TRIAL_ENV))
    if not (study and number):
        return None
    return _storage_url(), study, int(number)


def _storage_url() -> str:
    """The job's storage URL: the inherited one when it is the storage the sweeper named (its masked form matches),
    else the named one when it has no password to miss."""
    full, named = os.environ.get(STORAGE_ENV), os.environ.get(STORAGE_MASKED_ENV)
    if full and (named is None or mask_credentials(full) == named):
        return full
    if named and not has_credentials(named):
        return named
    raise ConfigError("hydra.sweeper.storage",
                      f"this job reports to the Optuna storage {named}, whose password reaches jobs only through the "
                      f"environment variable {STORAGE_ENV}, which this job's environment "
                      f"{'sets to another storage' if full else 'lacks'}: let the jobs inherit the sweep's "
                      f"environment (e.g. SLURM's default --export=ALL)")
