"""A sweep run again with the same command and ``hydra.sweep.dir`` finishes what is left: completed jobs are skipped
(their metrics.json untouched, their results still in the report), a killed or interrupted job resumes from its
last.ckpt, a failed job runs again from scratch (its old curves gone), and the report at the end covers every job.
An interrupted job of a basic sweep (one process) stops the sweep: no further job starts.

Jobs stop at chosen epochs through the hook of tests/train/test_interrupt.py (``CNNRUN_TEST_STOP``). The same sweep
runs three times: twice with Hydra's basic launcher, then with the joblib launcher (n_jobs=2), whose worker
processes make the same decisions, and where an interrupted job ends only itself; a smaller one runs twice under
submitit's local mode.
"""
import csv
import json
import signal
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import REPO, run_cli
from tests.train.test_interrupt import STOP_ENV

SWEEP = ["-m", "seed=0,1,2,3,4", "data.train_fraction=0.1", "trainer.max_epochs=2", "trainer.limit_test_batches=2",
         "logger=tensorboard", "logger.dashboards=false", "logger.log_summary=false",
         "callbacks.progress_bar.refresh_rate=0", "imports=[tests.train.test_interrupt]", "hydra.sweep.dir=sweep"]
ENV = {"PYTHONPATH": str(REPO)}


def number(job_folder_name: str) -> str:
    """The job number of a job folder (``3_seed=3``)."""
    return job_folder_name.split("_", 1)[0]


def job(sweep: Path, num: int) -> Path | None:
    return next((p for p in sweep.iterdir() if p.is_dir() and number(p.name) == str(num)), None)


def records(sweep: Path) -> dict[str, dict]:
    return {number(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}


def report(sweep: Path) -> dict[str, str]:
    """Job number -> status, from the sweep's comparison.csv."""
    with open(sweep / "comparison.csv") as f:
        return {number(row["job"]): row["status"] for row in csv.DictReader(f)}


def val_steps(job_dir: Path) -> list[int]:
    events = EventAccumulator(str(job_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.step for e in events.Scalars("val/acc")]


def test_a_sweep_run_again_skips_resumes_and_reruns_its_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    # 1: job 1 fails after its first epoch, then the whole sweep process is killed after job 2's first epoch
    proc = run_cli(SWEEP, cwd=tmp_path, env={**ENV, STOP_ENV: "fail:0:1,SIGKILL:0:2"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    first = records(sweep)
    assert {k: r["status"] for k, r in first.items()} == {"0": "completed", "1": "failed"}
    assert (job(sweep, 2) / "checkpoints" / "last.ckpt").exists() and job(sweep, 3) is None
    completed = (job(sweep, 0) / "metrics.json").read_bytes()

    # 2: the same command; job 3 is interrupted (SIGINT) after its first epoch, and the sweep stops there
    # (and job 2, resumed, must not train its finished epoch 0 again)
    proc = run_cli(SWEEP, cwd=tmp_path, env={**ENV, STOP_ENV: "SIGINT:0:3,fail:0:2"})
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "job 0: already completed, skipped" in proc.stdout
    assert "job 1: running again (RuntimeError: failed on purpose after epoch 0)" in proc.stdout
    assert "job 2: resuming after epoch 1 (unfinished)" in proc.stdout
    assert (f"interrupted (SIGINT) after 1 epoch; to finish the sweep, run the same command again with "
            f"hydra.sweep.dir={sweep}") in proc.stderr
    assert job(sweep, 4) is None  # no job after the interrupted one
    second = records(sweep)
    assert {k: r["status"] for k, r in second.items()} == {"0": "completed", "1": "completed", "2": "completed",
                                                            "3": "interrupted"}
    assert report(sweep) == {k: r["status"] for k, r in second.items()}  # the report lists the interrupted job
    assert "resumed" not in second["1"] and [h["epoch"] for h in second["1"]["history"]] == [0, 1]
    assert val_steps(job(sweep, 1)) == [1, 2]  # the failed attempt's curve was removed, not continued
    assert second["2"]["resumed"][0]["after_epoch"] == 1 and [h["epoch"] for h in second["2"]["history"]] == [0, 1]

    # 3: the same sweep under joblib: the finished jobs are skipped, job 3 resumes, job 4 is interrupted in its
    # worker process (the other jobs go on; the command counts it)
    proc = run_cli([*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], cwd=tmp_path,
                   env={**ENV, STOP_ENV: "SIGINT:0:4,fail:0:3"})
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "1 of 2 jobs interrupted; to finish them, run the same command again" in proc.stderr
    assert "failed" not in proc.stderr  # interrupted is not failed
    final = records(sweep)
    statuses = {**{str(j): "completed" for j in range(4)}, "4": "interrupted"}
    assert {k: r["status"] for k, r in final.items()} == statuses
    assert report(sweep) == statuses  # every job, old and new
    assert (job(sweep, 0) / "metrics.json").read_bytes() == completed  # skipped twice, never rewritten
    assert final["1"] == second["1"] and final["2"] == second["2"]
    assert final["3"]["resumed"][0]["previous_status"] == "interrupted" and final["3"]["epochs"] == 2
    assert val_steps(job(sweep, 3)) == [1, 2] and final["4"]["epochs"] == 1


def test_a_submitit_sweep_run_again_resumes_its_interrupted_job(tmp_path):
    """submitit's local mode (the SLURM path on this machine): each job in its own process, as on a cluster."""
    sweep = tmp_path / "sweep"
    local = ["-m", "seed=0,1", *SWEEP[2:], "hydra/launcher=local", "hydra.launcher.cpus_per_task=1"]
    proc = run_cli(local, cwd=tmp_path, env={**ENV, STOP_ENV: "SIGINT:0:1"})
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert {k: r["status"] for k, r in records(sweep).items()} == {"0": "completed", "1": "interrupted"}
    completed = (job(sweep, 0) / "metrics.json").read_bytes()

    proc = run_cli(local, cwd=tmp_path, env={**ENV, STOP_ENV: "fail:0:1"})  # job 1 must not train epoch 0 again
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = records(sweep)
    assert {k: r["status"] for k, r in final.items()} == {"0": "completed", "1": "completed"}
    assert (job(sweep, 0) / "metrics.json").read_bytes() == completed
    assert final["1"]["resumed"][0]["after_epoch"] == 1 and [h["epoch"] for h in final["1"]["history"]] == [0, 1]
    assert report(sweep) == {"0": "completed", "1": "completed"}
