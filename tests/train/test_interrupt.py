"""Graceful stop and resume, in-process: SIGINT stops training at the next batch with the finished epochs recorded
(status interrupted) and kept in last.ckpt; a second signal stops at once; ``resume=<run folder>`` continues the run
in its folder and ends as the run that was never stopped (bit-identical weights, the same metrics and history).

Every random stream is in use (sample order, augmentation, dropout, mixup), as in tests/train/test_resume.py, with a
per-epoch schedule (step), so that a run extended to more epochs follows the longer run's schedule.

This module is also the stop hook of the CLI and sweep tests: a run that imports it (``imports=[...]``) with
``CNNRUN_TEST_STOP=<action>:<epoch>[:<job>]`` in its environment (several, comma-separated) sends itself the signal
``<action>`` (SIGINT, SIGTERM, SIGKILL), or fails (``fail``), right after writing last.ckpt of ``epoch`` (in sweep
job ``job``).
"""
import copy
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

from cnnrun import ConfigError, compose, run
from cnnrun.train.interrupt import Interrupted, graceful_stop

RANDOM = ["model=dilated", "model.width=0.25", "model.depth=0.4", "model.dropout=0.5", "regularization.mixup_alpha=0.2",
          "data.input_shape=[1,16,16]", "data.train_fraction=0.1", "sched=step", "sched.step_size=1",
          "sched.gamma=0.5", "logger=none", "callbacks.progress_bar.refresh_rate=0"]
EPOCHS = 4
STOP_ENV = "CNNRUN_TEST_STOP"


# -- the stop hook ----------------------------------------------------------------------------------------------------
def stopping_save(save, action: str, epoch: int, job: int | None = None):
    """The checkpoint writer ``save`` followed, after last.ckpt of ``epoch`` (in sweep job ``job``), by the signal
    ``action`` names sent to this process, or by a crash (``fail``); once."""
    fired = []

    def save_then_stop(self, checkpoint, path, storage_options=None):
        save(self, checkpoint, path, storage_options)
        if (fired or Path(path).name != "last.ckpt" or checkpoint["epoch"] != epoch
                or (job is not None and _job() != job)):
            return
        fired.append(True)
        if action == "fail":
            raise RuntimeError(f"failed on purpose after epoch {epoch}")
        os.kill(os.getpid(), getattr(signal, action))

    return save_then_stop


def _job() -> int | None:
    from hydra.core.hydra_config import HydraConfig

    return int(HydraConfig.get().job.num) if HydraConfig.initialized() else None


def _install_from_env() -> None:
    from cnnrun.train.trainer import _atomic_checkpoint_io_class

    io = _atomic_checkpoint_io_class()
    for spec in os.environ[STOP_ENV].split(","):
        action, epoch, *job = spec.split(":")
        io.save_checkpoint = stopping_save(io.save_checkpoint, action, int(epoch), int(job[0]) if job else None)


if os.environ.get(STOP_ENV):  # imported by a run (imports=[tests.train.test_interrupt])
    _install_from_env()


@pytest.fixture
def stop_after(monkeypatch):
    """In-process stop hook: ``stop_after("SIGINT", 1)``."""
    from cnnrun.train.trainer import _atomic_checkpoint_io_class

    io = _atomic_checkpoint_io_class()

    def install(action: str, epoch: int) -> None:
        monkeypatch.setattr(io, "save_checkpoint", stopping_save(io.save_checkpoint, action, epoch))

    return install


# -- helpers ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base():
    return compose(RANDOM)


def fit(base, out: Path, epochs: int = EPOCHS):
    cfg = copy.deepcopy(base)
    cfg.trainer.max_epochs = epochs
    return run(cfg, output_dir=out)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def last_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def resume(run_dir: Path, *overrides: str):
    return run(compose(["callbacks.progress_bar.refresh_rate=0", f"resume={run_dir}", *overrides]))


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical final weights (and BN statistics, optimizer state) and the same metrics and history."""
    ca, cb = last_checkpoint(a), last_checkpoint(b)
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    for key in ca["state_dict"]:
        assert torch.equal(ca["state_dict"][key], cb["state_dict"][key]), key
    assert ca["global_step"] == cb["global_step"]
    ra, rb = record(a), record(b)
    assert ra["metrics"] == rb["metrics"] and ra["history"] == rb["history"]
    assert {**ra["selected"], "checkpoint": None} == {**rb["selected"], "checkpoint": None}  # the same best epoch


@pytest.fixture(scope="module")
def straight(base, tmp_path_factory):
    """The run that was never stopped."""
    out = tmp_path_factory.mktemp("straight")
    fit(base, out)
    return out


# -- the signal handlers -----------------------------------------------------------------------------------------------
def test_the_first_signal_asks_the_second_stops_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught:
        with graceful_stop() as stop:
            assert signal.getsignal(signal.SIGINT) not in before
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.signum == signal.SIGTERM  # recorded, nothing raised: the block goes on to its safe point
            with pytest.raises(Exception):
                stop.check()
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_status == 128 + 15
    assert not caught.value.immediate
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before

    steps = []
    with pytest.raises(Interrupted) as caught:
        with graceful_stop():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # the second one raises here
            steps.append(2)
    assert steps == [1] and caught.value.immediate and caught.value.exit_status == 128 + 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# -- a run stopped and resumed ---------------------------------------------------------------------------------------
def test_sigint_after_an_epoch_records_it_and_resume_ends_as_the_straight_run(base, straight, tmp_path, stop_after):
    out = tmp_path / "run"
    stop_after("SIGINT", 1)  # right after last.ckpt of epoch 1: training stops at the first batch of epoch 2
    with pytest.raises(Interrupted) as caught:
        fit(base, out)
    assert caught.value.signum == signal.SIGINT and caught.value.epochs_done == 2
    rec, full = record(out), record(straight)
    assert rec["status"] == "interrupted" and rec["epochs"] == 2
    assert rec["history"] == full["history"][:2]  # the finished epochs, as the straight run had them
    last = {k: v for k, v in full["history"][1].items() if k != "epoch"}
    assert rec["metrics"] == last  # the last finished epoch's metrics, no test metrics: the test was skipped
    assert rec["interrupted_at"] == {"signal": "SIGINT", "epochs_done": 2, "at_once": False,
                                     "resume": f"python -m cnnrun resume={out}"}
    assert last_checkpoint(out)["epoch"] == 1

    stop_after("fail", 1)  # the resume must not train a finished epoch again (training afresh would end alike)
    metrics = resume(out)
    done = record(out)
    assert done["status"] == "completed" and done["epochs"] == EPOCHS
    assert done["resumed"][0]["after_epoch"] == 2 and done["resumed"][0]["previous_status"] == "interrupted"
    assert metrics == full["metrics"]
    assert_same_run(out, straight)


def test_a_signal_stops_at_the_next_batch_and_a_second_one_at_once(base, tmp_path, monkeypatch):
    from cnnrun.train.module import Classifier

    steps, signals = [], {"at": None, "count": 0}
    original = Classifier.training_step

    def spy(self, batch, batch_idx):
        steps.append((self.current_epoch, batch_idx))
        if (self.current_epoch, batch_idx) == signals["at"]:
            for _ in range(signals["count"]):
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", spy)
    signals.update(at=(1, 1), count=1)  # mid-epoch: this batch ends, no other starts
    with pytest.raises(Interrupted):
        fit(base, tmp_path / "once")
    assert steps[-1] == (1, 1) and steps.count((1, 0)) == 1
    rec = record(tmp_path / "once")
    assert rec["epochs"] == 1 and [h["epoch"] for h in rec["history"]] == [0]  # the partial epoch is dropped
    assert last_checkpoint(tmp_path / "once")["epoch"] == 0

    steps.clear()
    signals.update(at=(0, 1), count=2)  # the second signal stops inside the batch
    with pytest.raises(Interrupted) as caught:
        fit(base, tmp_path / "twice")
    assert caught.value.immediate and steps[-1] == (0, 1)
    rec = record(tmp_path / "twice")
    assert rec["status"] == "interrupted" and rec["epochs"] == 0 and rec["interrupted_at"]["at_once"]
    assert rec["interrupted_at"]["resume"] is None  # no epoch finished: nothing to resume
    with pytest.raises(ConfigError, match="^resume: .*no checkpoints/last.ckpt"):
        resume(tmp_path / "twice")


def test_a_run_stopped_while_testing_resumes_with_the_test_only(base, straight, tmp_path, monkeypatch, stop_after):
    from cnnrun.train.module import Classifier

    original = Classifier.test_step

    def interrupt_once(self, batch, batch_idx):
        monkeypatch.setattr(Classifier, "test_step", original)
        os.kill(os.getpid(), signal.SIGINT)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "test_step", interrupt_once)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        fit(base, out)
    rec = record(out)
    assert rec["status"] == "interrupted" and rec["epochs"] == EPOCHS and "test/acc" not in rec["metrics"]
    stop_after("fail", EPOCHS - 1)
    resume(out)
    assert record(out)["resumed"][0]["after_epoch"] == EPOCHS
    assert_same_run(out, straight)


def test_a_completed_run_extended_to_more_epochs_ends_as_the_longer_run(base, straight, tmp_path, stop_after):
    out = tmp_path / "short"
    fit(base, out, epochs=2)
    before = (out / "metrics.json").read_bytes()
    assert resume(out) == record(out)["metrics"]  # complete: nothing is run, nothing is written
    assert (out / "metrics.json").read_bytes() == before
    stop_after("fail", 1)
    resume(out, f"trainer.max_epochs={EPOCHS}")
    assert record(out)["epochs"] == EPOCHS
    assert_same_run(out, straight)


def test_resume_refuses_what_it_cannot_continue(straight, tmp_path):
    kept = {name: (straight / name).read_bytes() for name in ("metrics.json", "config.yaml")}
    with pytest.raises(ConfigError, match="^model.width: cannot change when resuming"):
        resume(straight, "model.width=0.5")
    with pytest.raises(ConfigError, match="^optim: cannot change when resuming"):
        resume(straight, "optim=adam")
    with pytest.raises(ConfigError, match="^trainer.max_epochs: is 2, but .* has trained 4 epochs"):
        resume(straight, "trainer.max_epochs=2")
    assert {name: (straight / name).read_bytes() for name in kept} == kept  # a refused resume writes nothing
    with pytest.raises(ConfigError, match="^resume: no run folder at"):
        resume(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="^resume: .* has no config.yaml"):
        resume(tmp_path)
    (tmp_path / "multirun.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="^resume: .* is a sweep folder: .*hydra.sweep.dir="):
        resume(tmp_path)
    onecycle = yaml.safe_load((straight / "config.yaml").read_text())
    onecycle["sched"] = {"name": "onecycle"}  # torch's OneCycleLR fails past the steps it was built for
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(onecycle))
    with pytest.raises(ConfigError, match="^trainer.max_epochs: cannot grow from 4: .*sched=onecycle"):
        resume(tmp_path, "trainer.max_epochs=6")


def test_tensorboard_curves_continue_without_repeated_steps(tmp_path, stop_after):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dashboards = {"filters": {"every_n_epochs": 1}, "histograms": {"every_n_epochs": 1}, "feature_maps": False,
                  "graph": False, "confusion_matrix": True, "misclassified": False}
    cfg = compose([*RANDOM, "logger=tensorboard", f"trainer.max_epochs={EPOCHS}"])
    cfg.logger.dashboards = dashboards
    stop_after("SIGINT", 1)
    with pytest.raises(Interrupted):
        run(cfg, output_dir=tmp_path)
    stop_after("fail", 1)
    resume(tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={k: 0 for k in (
        "scalars", "images", "histograms", "tensors")})
    events.Reload()
    tags = events.Tags()
    read = {"scalars": events.Scalars, "images": events.Images, "histograms": events.Histograms,
            "tensors": events.Tensors}
    for kind, reader in read.items():
        for tag in tags[kind]:
            steps = [e.step for e in reader(tag)]
            assert len(steps) == len(set(steps)), (kind, tag, steps)
    assert [e.step for e in events.Scalars("val/acc")] == list(range(1, EPOCHS + 1))  # every epoch, once
    assert len(events.Histograms(tags["histograms"][0])) == EPOCHS


def test_a_moved_run_folder_resumes_with_its_best_epoch(base, tmp_path, stop_after):
    """Lightning restores the best epoch only where the checkpoint's folder is the current one; a run folder that
    moved (copied from a cluster) keeps it too. Selecting the *lowest* val/acc puts the best epoch at epoch 0, before
    the interruption, where a resume that lost it would select a later one."""
    cfg = copy.deepcopy(base)
    cfg.trainer.max_epochs, cfg.callbacks.checkpoint.mode, cfg.callbacks.checkpoint.tie_break = EPOCHS, "min", None
    stop_after("SIGINT", 1)
    with pytest.raises(Interrupted):
        run(cfg, output_dir=tmp_path / "there")
    assert record(tmp_path / "there")["selected"]["epoch"] == 0
    (tmp_path / "there").rename(tmp_path / "here")
    stop_after("fail", 1)
    resume(tmp_path / "here")
    rec = record(tmp_path / "here")
    assert rec["selected"]["epoch"] == 0 and rec["epochs"] == EPOCHS
    assert rec["best_checkpoint"] == str(tmp_path / "here" / "checkpoints" / "best.ckpt")


def test_ctrl_c_before_training_is_recorded_as_interrupted(base, tmp_path, monkeypatch):
    """Outside training Python's own handler turns Ctrl-C into a KeyboardInterrupt: still an interrupted run."""
    import cnnrun.train.fit

    def interrupted_loading(plain, record):
        raise KeyboardInterrupt

    monkeypatch.setattr(cnnrun.train.fit, "load_splits", interrupted_loading)
    with pytest.raises(Interrupted) as caught:
        fit(base, tmp_path)
    assert caught.value.exit_status == 128 + 2 and caught.value.resume is None
    rec = record(tmp_path)
    assert rec["status"] == "interrupted" and rec["interrupted_at"]["epochs_done"] == 0


def test_a_sweep_job_run_again_is_skipped_resumed_or_run_afresh(straight, tmp_path):
    """The decision for a job folder of a sweep run again (cnnrun.resume.continue_job), against the rules: a
    completed job with the same config (progress bar aside) is skipped; one that is extended, interrupted or killed
    resumes; a failed one, or one whose config changed, runs again."""
    import shutil

    from cnnrun.resume import continue_job

    job = tmp_path / "job"
    shutil.copytree(straight, job)
    saved = yaml.safe_load((job / "config.yaml").read_text())

    def decide(status=None, error=None, **changes):
        if status:
            rec = {**record(straight), "status": status, "error": error}
            (job / "metrics.json").write_text(json.dumps(rec))
        plain = copy.deepcopy(saved)
        for key, value in changes.items():
            group, name = key.split("__")
            plain[group][name] = value
        return continue_job(job, plain, 7)

    skipped = decide()
    assert skipped.action == "skip" and skipped.note == "job 7: already completed, skipped"
    assert skipped.previous.metrics == record(straight)["metrics"]
    assert decide(callbacks__progress_bar={"refresh_rate": 5}).action == "skip"
    assert decide(model__width=0.5).note == "job 7: running again (its config changed)"
    assert decide(trainer__max_epochs=EPOCHS - 1).action == "fresh"
    extended = decide(trainer__max_epochs=EPOCHS + 2)
    assert (extended.action, extended.epochs_done, extended.checkpoint) == ("resume", EPOCHS,
                                                                             job / "checkpoints" / "last.ckpt")
    assert decide("interrupted").action == "resume"
    assert decide("failed", "SystemExit: 1").action == "resume"  # Ctrl-C as cnnrun recorded it before
    assert decide("failed", "RuntimeError: out of memory").note == "job 7: running again (RuntimeError: out of memory)"
    assert decide("diverged", "training diverged").action == "fresh"
    (job / "metrics.json").unlink()
    assert decide().action == "resume"  # killed: no metrics.json, a last.ckpt
    (job / "checkpoints" / "last.ckpt").unlink()
    assert decide().action == "fresh"  # killed before its first epoch ended
