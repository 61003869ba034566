"""The study's storage, and Optuna's heartbeat, which tells a trial of a sweep process that died from a running one.

Optuna's heartbeat (``RDBStorage(heartbeat_interval=..., grace_period=...)``) beats only inside ``Study.optimize``;
this sweeper asks and tells (its trials are Hydra jobs), so it beats itself: while a batch of trials runs, a thread of
the sweeper process records a heartbeat for each of them every ``heartbeat_interval`` seconds. The jobs may run in
this process, in worker processes or on other machines: the sweeper waits for them in any case, so its beat lasts as
long as its trials. When the process dies (SIGKILL, out of memory, preemption), the beat stops; the next sweep of the
study (the same command again) marks every trial whose last beat is older than ``grace_period`` FAIL, as
``Study.optimize`` does, and Optuna's ``RetryHeartbeatStaleTrialCallback`` queues its parameters again.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from typing import Any, Iterator

from cnnrun.masking import mask_credentials

from ._space import SweepConfigError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Around calls of Optuna's heartbeat API: no warnings that it is experimental and meant for ``optimize``."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield


def open_storage(url: str, heartbeat_interval: int | None, grace_period: int | None, stale_trial_retries: int):
    """Optuna's RDB storage at ``url``, with heartbeats every ``heartbeat_interval`` seconds (None: off) and a stale
    trial's parameters queued again up to ``stale_trial_retries`` times."""
    import optuna

    callback = None
    if heartbeat_interval is not None and stale_trial_retries > 0:
        with quiet_optuna():
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=stale_trial_retries)
    try:
        with quiet_optuna():
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                              heartbeat_stale_trial_callback=callback)
    except Exception as err:  # a bad URL, a missing database driver, a file that cannot be opened
        raise storage_error(url, err) from None


def storage_error(url: str, err: Exception) -> SweepConfigError:
    """The error that names the storage (its password masked) and the first line of what went wrong."""
    first = str(err).splitlines()[0] if str(err) else ""
    return SweepConfigError("hydra.sweeper.storage", mask_credentials(f"{url}: {type(err).__name__}: {first}"))


def fail_stale_trials(study) -> list[int]:
    """Mark FAIL the running trials of ``study`` whose heartbeat stopped (their process died); their numbers."""
    import optuna

    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    with quiet_optuna():
        optuna.storages.fail_stale_trials(study)
    still = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    return sorted(running - still)


class Heartbeat:
    """``with Heartbeat(storage, trial_ids, interval):`` records a heartbeat of each trial every ``interval`` seconds
    while the block runs (nothing when ``interval`` is None)."""

    def __init__(self, storage, trial_ids: list[int], interval: int | None):
        self.storage, self.trial_ids, self.interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        if self.interval is not None and self.trial_ids:
            self._beat()  # at once: a process killed in its first interval leaves a heartbeat to go stale
            self._thread = threading.Thread(target=self._run, name="cnnrun-optuna-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            self._beat()

    def _beat(self) -> None:
        for trial_id in self.trial_ids:
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception as err:  # a busy database: the next beat comes within the grace period
                log.warning(mask_credentials(f"heartbeat of trial id {trial_id} not recorded: {err}"))
