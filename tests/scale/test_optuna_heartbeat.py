"""A trial outlives the process that ran it.

- The sweep process dies (hydra.sweeper.heartbeat_interval, grace_period, stale_trial_retries, and n_trials as the
  study's size): a real sweep process (the sweeper's own loop, with a stand-in launcher whose second job never ends)
  is killed with SIGKILL while that job runs; the same sweep run again must mark the trial FAIL, run its parameters
  again (Optuna's RetryHeartbeatStaleTrialCallback is the reference for what a retry is) and end with n_trials
  finished trials. Staleness is judged by Optuna's own fail_stale_trials.
- The job is preempted (SLURM): under submitit's local executor the job gets SIGUSR2, submitit's preemption and
  time-limit signal, after its first epoch; submitit's checkpoint hook requeues it, the job resumes from its
  last.ckpt in its own folder and the trial completes with every epoch reported.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from hydra_plugins.cnnrun_optuna_sweeper._space import SweepConfigError
from hydra_plugins.cnnrun_optuna_sweeper.optuna_sweeper import CnnrunOptunaSweeper
from cnnrun.masking import mask_credentials
from tests.conftest import jobs_by_number, run_cli
from tests.scale.test_credentials import SECRET, dialect, files_holding  # noqa: F401 (dialect: a fixture)
from tests.scale.test_credentials import make_sweeper as sweep_with
from tests.scale.test_sweeper_options import Launcher

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
REPO = Path(__file__).resolve().parents[2]
STUDY = "heartbeat"
N_TRIALS = 3
BLOCKED = 1  # the trial whose job runs when the sweep process is killed


class BlockingLauncher(Launcher):
    """As the stand-in launcher, but job ``BLOCKED`` notes that it started, then runs until the process is killed."""

    def launch(self, job_overrides, initial_job_idx):
        if initial_job_idx == BLOCKED:
            (self.sweep_dir / "started").write_text("")
            time.sleep(600)
        return super().launch(job_overrides, initial_job_idx)


def make_sweeper(sweep_dir: Path, launcher, **settings) -> CnnrunOptunaSweeper:
    """The sweeper of study STUDY (N_TRIALS trials) with these hydra.sweeper settings, its storage
    sqlite:///<sweep_dir>/optuna.db."""
    return sweep_with(sweep_dir, launcher, **{"study_name": STUDY, "n_trials": N_TRIALS, **settings})


def sweep_until_killed(sweep_dir: str) -> None:
    """Run in a subprocess: the sweep, heartbeats every second, until the test kills it."""
    sweep_dir = Path(sweep_dir)
    make_sweeper(sweep_dir, BlockingLauncher(sweep_dir), heartbeat_interval=1).sweep([])


def storage_url(sweep_dir: Path) -> str:
    return f"sqlite:///{sweep_dir / 'optuna.db'}"


def running(sweep_dir: Path) -> list[int]:
    study = optuna.load_study(study_name=STUDY, storage=storage_url(sweep_dir))
    return [t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A sweep folder whose sweep process was killed with SIGKILL during trial BLOCKED; and what Optuna's staleness
    check said of that trial while the process was alive, more than a grace period after the trial started."""
    sweep_dir = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    code = f"from tests.scale.test_optuna_heartbeat import sweep_until_killed; sweep_until_killed({str(sweep_dir)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (sweep_dir / "started").exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # While the job runs, a staleness check with a 2 s grace period (as another sweep of the study would make)
        # must find the trial alive 3.2 s after it started: its sweep process beats every second.
        time.sleep(3.2)
        observer = optuna.storages.RDBStorage(storage_url(sweep_dir), heartbeat_interval=1, grace_period=2)
        optuna.storages.fail_stale_trials(optuna.load_study(study_name=STUDY, storage=observer))
        alive = running(sweep_dir)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The process died an hour ago: its last heartbeat is that old (the heartbeat row that the killed sweep wrote).
    with sqlite3.connect(sweep_dir / "optuna.db") as db:
        aged = db.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 hour') WHERE trial_id IN "
                          "(SELECT trial_id FROM trials WHERE number = ?)", (BLOCKED,)).rowcount
    return sweep_dir, alive, aged


@pytest.fixture
def resumable(killed, tmp_path):
    """A copy of the killed sweep's folder, to be resumed."""
    sweep_dir, _, _ = killed
    shutil.copytree(sweep_dir, tmp_path / "sweep")
    return tmp_path / "sweep"


def test_the_sweep_process_beats_while_a_trial_runs(killed):
    sweep_dir, alive, aged = killed
    assert alive == [BLOCKED]
    assert aged == 1  # the killed process had recorded the trial's heartbeat
    assert running(sweep_dir) == [BLOCKED]  # killed: nobody told Optuna


@pytest.mark.parametrize("retries", [1, 0])
def test_the_same_sweep_again_fails_the_dead_trial_and_reaches_n_trials(resumable, retries):
    sweeper = make_sweeper(resumable, Launcher(resumable), stale_trial_retries=retries)
    sweeper.sweep([])
    study = optuna.load_study(study_name=STUDY, storage=storage_url(resumable))
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and states[BLOCKED] == "FAIL"
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == N_TRIALS  # n_trials is the study's size
    assert len(states) == N_TRIALS + 1  # the dead trial, and one more in its place
    retried = [t for t in study.trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
               is not None]
    if retries:
        assert [(optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t), t.params)
                for t in retried] == [(BLOCKED, study.trials[BLOCKED].params)]
        assert retried[0].state.name == "COMPLETE"
    else:
        assert retried == []
    csv = (resumable / "trials.csv").read_text().splitlines()
    assert csv[1 + BLOCKED].startswith(f"{BLOCKED},FAIL,")


def test_a_finished_study_runs_nothing_more_and_a_larger_n_trials_extends_it(tmp_path):
    make_sweeper(tmp_path, Launcher(tmp_path)).sweep([])
    launcher = Launcher(tmp_path)
    make_sweeper(tmp_path, launcher).sweep([])
    assert launcher.batches == []
    make_sweeper(tmp_path, launcher, n_trials=N_TRIALS + 2).sweep([])
    study = optuna.load_study(study_name=STUDY, storage=storage_url(tmp_path))
    assert launcher.batches == [1, 1] and [t.state.name for t in study.trials] == ["COMPLETE"] * (N_TRIALS + 2)


@pytest.mark.parametrize("key, value", [("heartbeat_interval", 0), ("grace_period", -1), ("grace_period", 1.5),
                                        ("stale_trial_retries", -1)])
def test_heartbeat_settings_are_checked(tmp_path, key, value):
    with pytest.raises(SweepConfigError) as err:
        make_sweeper(tmp_path, Launcher(tmp_path), **{key: value}).sweep([])
    assert err.value.key == f"hydra.sweeper.{key}"


# Imported by the job (imports: [preempt]): in a submitit job's first attempt, once the first epoch's last.ckpt is
# written, the job gets SIGUSR2 as SLURM sends it (--signal=USR2@...) before a time limit or at preemption.
PREEMPT = textwrap.dedent("""\
    import os, signal, threading, time
    from pathlib import Path

    def preempt_after_first_epoch():
        import torch
        from hydra.core.hydra_config import HydraConfig

        job_dir = Path(HydraConfig.get().runtime.output_dir)
        if (job_dir / "preempted").exists():
            return  # the requeued attempt
        while True:
            try:
                torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
                break
            except Exception:  # not written yet
                time.sleep(0.05)
        (job_dir / "preempted").write_text("")
        os.kill(os.getpid(), signal.SIGUSR2)

    if os.environ.get("SUBMITIT_LOCAL_JOB_ID"):  # the job's process, not the sweep's
        threading.Thread(target=preempt_after_first_epoch, daemon=True).start()
    """)

PREEMPTED_SEARCH = textwrap.dedent("""\
    # @package _global_
    defaults:
      - override /hydra/sweeper: cnnrun_optuna
      - override /hydra/launcher: local
    imports: [preempt]
    trainer:
      max_epochs: 3
      limit_train_batches: 4
      limit_val_batches: 1
      limit_test_batches: 1
    hydra:
      sweeper:
        study_name: preempted
        n_trials: 1
        params:
          optim.lr: tag(log, interval(0.01, 0.1))
    """)


def test_a_preempted_job_is_requeued_and_resumes_and_its_trial_completes(tmp_path, dialect):
    url, env = dialect  # a storage with a password: it must reach the requeued job too, and no file of the sweep
    (tmp_path / "preempt.py").write_text(PREEMPT)
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "preempted.yaml").write_text(PREEMPTED_SEARCH)
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "--config-dir", str(tmp_path / "conf"), "hparams_search=preempted",
                    f"hydra.sweep.dir={sweep}", "logger=none", "callbacks.progress_bar.refresh_rate=0",
                    f"hydra.sweeper.storage='{url}'"],
                   cwd=tmp_path, env={"PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], str(tmp_path)])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = jobs_by_number(sweep)[0]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert (job / "preempted").exists() and "Requeued job" in logs  # preempted, and requeued by submitit's hook
    record = json.loads((job / "metrics.json").read_text())
    assert record["status"] == "completed" and [h["epoch"] for h in record["history"]] == [0, 1, 2]
    # resumed once, from last.ckpt in its own folder, before the run had finished: the signal is sent once epoch 1's
    # checkpoint exists and handled at the training loop's next Python step, which may come after epoch 2 ended
    (resumed,) = record["resumed"]
    assert resumed["after_epoch"] in (1, 2)
    study = optuna.load_study(study_name="preempted", storage=f"sqlite:///{tmp_path / 'db' / 'optuna.db'}")
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE" and sorted(trial.intermediate_values) == [0, 1, 2]
    assert trial.value == record["metrics"]["val/acc"]
    assert SECRET not in proc.stdout + proc.stderr + logs and files_holding(sweep, SECRET) == []
    assert mask_credentials(url) in (sweep / "optimization_results.yaml").read_text()
