"""Interruption and resume from the command line: a run killed with SIGKILL after an epoch, or stopped with SIGINT
(Ctrl-C) or SIGTERM, and continued with ``python -m cnnrun resume=<run folder>``, ends with the same weights
(torch.equal on last.ckpt's state_dict) and the same metrics.json metrics and history as the run that was never
stopped, in its own folder (no second folder under outputs/). The resume removes the partial files that killed
writers left (a dead process's), and only those.

Runs stop at a chosen epoch: they import tests/train/test_interrupt.py (``imports=``), whose hook sends the process
the signal right after last.ckpt of that epoch is written (``CNNRUN_TEST_STOP``). Dropout, augmentation (digits'
recipe) and mixup are on, so every random stream matters. Each command loads Lightning (seconds), so the run that
is never stopped and the last resume of each test run in-process, with the same config and one thread, as the
commands have it.
"""
import contextlib
import io
import os
import signal
import subprocess

import pytest

from cnnrun import compose, run
from tests.conftest import REPO, run_cli
from tests.train.test_interrupt import EPOCHS, RANDOM, STOP_ENV, assert_same_run, last_checkpoint, record
from tests.train.test_interrupt import stop_after  # noqa: F401  (a fixture)

# one thread: the same arithmetic in the commands and in this process, whatever the machine's default
ARGS = [*RANDOM, f"trainer.max_epochs={EPOCHS}", "trainer.threads=1", "imports=[tests.train.test_interrupt]"]
ENV = {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The run that was never stopped."""
    out = tmp_path_factory.mktemp("straight")
    run(compose(ARGS), output_dir=out)
    return out


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def resume_here(run_dir) -> None:
    run(compose([f"resume={run_dir}"]))


def start_stopped(cwd, stop: str):
    """A run in ``cwd/run`` that stops as ``stop`` says (``SIGINT:0``: SIGINT after epoch 0)."""
    return run_cli([*ARGS, "hydra.run.dir=run"], cwd=cwd, env={**ENV, STOP_ENV: stop})


def files(folder) -> dict[str, bytes]:
    """Every file below ``folder`` (Hydra's log, which each command appends to, aside) and its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.suffix != ".log"}


def resume_lines(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "resume" in line]


def test_a_run_killed_after_an_epoch_resumes_to_the_same_weights_and_metrics(straight, tmp_path, stop_after):
    proc = start_stopped(tmp_path, "SIGKILL:1")
    run_dir = tmp_path / "run"
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (run_dir / "metrics.json").exists() and last_checkpoint(run_dir)["epoch"] == 1  # 2 epochs done

    # what killed writers leave (named as atomic_write names its files): a dead writer's go, a live writer's stay
    dead = _dead_pid()
    strays = [run_dir / "checkpoints" / f".last.ckpt.{dead}.0a1b2c3d.tmp", run_dir / f".metrics.json.{dead}.9f.tmp"]
    for path in strays:
        path.write_bytes(b"x" * 1000)
    alive = run_dir / "checkpoints" / f".best.ckpt.{os.getpid()}.77.tmp"
    alive.write_bytes(b"partial")

    stop_after("fail", 1)  # the resume must not train a finished epoch again (training afresh would end alike)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        resume_here(run_dir)
    assert f"{run_dir}: removed 2 partial files (0.0 MiB) that killed writes left" in out.getvalue()
    assert not any(path.exists() for path in strays) and alive.read_bytes() == b"partial"
    alive.unlink()
    rec = record(run_dir)
    assert rec["status"] == "completed" and rec["epochs"] == EPOCHS
    assert rec["resumed"][0]["previous_status"] == "unfinished"  # killed: it wrote no metrics.json
    assert_same_run(run_dir, straight)


def test_sigint_and_sigterm_stop_gracefully_and_the_printed_command_resumes(straight, tmp_path, stop_after):
    run_dir = tmp_path / "run"
    proc = start_stopped(tmp_path, "SIGINT:0")
    assert proc.returncode == 130, proc.stderr[-3000:]
    command = f"python -m cnnrun resume={run_dir}"
    assert resume_lines(proc) == [f"interrupted (SIGINT) after 1 epoch; resume with: {command}"]
    assert "Traceback" not in proc.stderr
    rec, full = record(run_dir), record(straight)
    assert rec["status"] == "interrupted" and rec["epochs"] == 1 and rec["history"] == full["history"][:1]
    assert rec["interrupted_at"]["signal"] == "SIGINT" and rec["interrupted_at"]["resume"] == command

    proc = run_cli(command.split()[3:], cwd=tmp_path, env={**ENV, STOP_ENV: "SIGTERM:2,fail:0"})
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert f"{run_dir}: resuming after epoch 1" in proc.stdout
    assert resume_lines(proc)[-1] == f"interrupted (SIGTERM) after 3 epochs; resume with: {command}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # in its own folder: nothing under outputs/
    rec = record(run_dir)
    assert rec["status"] == "interrupted" and rec["epochs"] == 3 and rec["history"] == full["history"][:3]
    assert rec["interrupted_at"]["signal"] == "SIGTERM"

    stop_after("fail", 2)
    resume_here(run_dir)
    assert [r["after_epoch"] for r in record(run_dir)["resumed"]] == [1, 3]
    assert_same_run(run_dir, straight)


def test_resuming_a_completed_run_does_nothing(straight, tmp_path):
    before = files(straight)
    proc = run_cli([f"resume={straight}"], cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{straight}: already completed after {EPOCHS} epochs; nothing to resume" in proc.stdout
    assert files(straight) == before  # its record, checkpoints, curves and Hydra's .hydra/ as they were
    assert list(tmp_path.iterdir()) == []

    proc = run_cli([f"resume={tmp_path / 'nowhere'}"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: resume: no run folder at {tmp_path / 'nowhere'}"
    assert list(tmp_path.iterdir()) == []
