"""Optuna pruning inside a job: report the per-epoch validation metric to the job's trial (``cnnrun/trials.py``
says which), stop when it is pruned. Light module: Optuna and Lightning load only when a trial runs.
"""
from __future__ import annotations

import math
from typing import Any

from cnnrun.trials import MONITOR, PRUNER_ATTR, make_pruner, trial_from_env


class Pruned(Exception):
    """The job's trial was pruned: training stopped after ``epoch`` with ``value`` of the monitored metric."""

    def __init__(self, epoch: int, value: float, history: list[dict[str, Any]] | None = None):
        self.epoch, self.value, self.history = epoch, value, history or []
        super().__init__(f"trial pruned after epoch {epoch} ({MONITOR}={value:.4f})")


def pruning_callback():
    """The Lightning callback that reports to this job's trial, or None when the job is not an Optuna trial."""
    found = trial_from_env()
    if found is None:
        return None
    import optuna
    import pytorch_lightning as pl

    storage_url, study_name, number = found
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(storage_url)
    study_id = storage.get_study_id_from_name(study_name)
    pruner = make_pruner(storage.get_study_user_attrs(study_id).get(PRUNER_ATTR))
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    trial = optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))

    class OptunaPruning(pl.Callback):
        """Reports ``val/acc`` after every validation; raises :class:`Pruned` when the pruner says so."""

        def __init__(self):
            self.trial = trial

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get(MONITOR)
            if value is None:
                return
            value, epoch = float(value), trainer.current_epoch
            if not math.isfinite(value):
                return  # a diverging run stops on its own, as failed
            self.trial.report(value, step=epoch)
            if self.trial.should_prune():
                this_epoch = {"epoch": epoch, **{k: float(v) for k, v in trainer.callback_metrics.items()
                                                 if k.startswith("val/")}}
                raise Pruned(epoch, value, [*getattr(pl_module, "history", []), this_epoch])

    return OptunaPruning()
