"""The command line, in subprocesses with temporary output folders (as users run it)."""
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import jobs_by_number, run_cli


def only_run(base: Path) -> Path:
    runs = [p for p in (base / "outputs" / "runs").iterdir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_default_run_writes_a_complete_folder(tmp_path):
    proc = run_cli(["trainer.max_epochs=1", "optim.lr=0.05"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run(tmp_path)
    names = {p.name for p in run_dir.iterdir()}
    assert {".hydra", "config.yaml", "summary.json", "metrics.json", "checkpoints", "tensorboard"} <= names
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed"
    assert record["overrides"] == ["trainer.max_epochs=1", "optim.lr=0.05"]
    assert "test/acc" in proc.stdout and "61,706" in proc.stdout  # the summary table and the test metrics
    # the end: one table of the final metrics (not Lightning's test table as well), the folder, the dashboards
    assert "Test metric" not in proc.stdout and proc.stdout.count("final metrics") == 1
    assert f"{record['metrics']['test/acc']:.4g}" in proc.stdout
    assert re.search(rf"run folder: \S*{re.escape(str(run_dir.relative_to(tmp_path)))}\n", proc.stdout)
    assert re.search(rf"tensorboard --logdir \S*{re.escape(str(run_dir.relative_to(tmp_path)))}\n", proc.stdout)


def test_summary_mode_prints_the_table_without_training(tmp_path):
    proc = run_cli(["mode=summary", "model=lenet5"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "61,706" in proc.stdout and "avgpool" in proc.stdout
    run_dir = only_run(tmp_path)
    assert json.loads((run_dir / "summary.json").read_text())["total_params"] == 61_706
    assert not (run_dir / "checkpoints").exists()
    assert "pytorch_lightning" not in proc.stdout + proc.stderr


def test_the_quick_exit_keeps_the_status_and_still_runs_exit_handlers_and_waits_for_threads(tmp_path):
    """The command ends without the interpreter's module teardown (os._exit), but as a normal exit would: its status,
    the atexit handlers run, the threads that are not daemons finish, the streams are flushed."""
    (tmp_path / "exitprobe.py").write_text(textwrap.dedent("""\
        import atexit, threading, time
        from pathlib import Path

        atexit.register(lambda: print("atexit handler ran"))

        def finish():
            time.sleep(0.5)
            Path("thread.done").write_text("done")

        threading.Thread(target=finish).start()
        """))
    proc = run_cli(["imports=[exitprobe]", "optim.lr=-1"], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr == "error: optim.lr: must be a positive number, got -1.0\n"
    assert proc.stdout.endswith("atexit handler ran\n"), proc.stdout
    assert (tmp_path / "thread.done").read_text() == "done"


@pytest.mark.parametrize("args,message", [
    (["model.layers.0.conv.kernal_size=5", "trainer.max_epochs=1"],
     "error: model.layers[0] (conv): unknown argument 'kernal_size'; did you mean 'kernel_size'?"),
    (["optim.lr=-0.1"], "error: optim.lr: must be a positive number, got -0.1"),
    (["model=lenet6"], "error: model: unknown option 'lenet6'; did you mean 'lenet5'? (options: alexnet, "),
])
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    if "kernal_size" in args[0]:
        args = ["+" + args[0], *args[1:]]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]
    runs = tmp_path / "outputs" / "runs"
    if runs.exists():  # a job that started records its failure
        record = json.loads((only_run(tmp_path) / "metrics.json").read_text())
        assert record["status"] == "failed" and message.removeprefix("error: ") in record["error"]


def test_multirun_sweep_gives_each_job_its_folder_and_survives_a_failing_job(tmp_path):
    proc = run_cli(["-m", "optim.lr=0.1,-1", "seed=1,2", "trainer.max_epochs=1",
                    "callbacks.progress_bar.refresh_rate=0"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # some jobs failed: the sweep still ran all of them
    assert "2 of 4 jobs failed" in proc.stderr and "Traceback" not in proc.stderr
    sweeps = list((tmp_path / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1
    jobs = jobs_by_number(sweeps[0])
    assert sorted(jobs) == [0, 1, 2, 3]
    assert [p.name for p in sweeps[0].iterdir() if p.is_dir() and p not in jobs.values()] == []
    status = {}
    for job in jobs.values():
        record = json.loads((job / "metrics.json").read_text())
        swept = sorted(o for o in record["overrides"] if o.startswith(("optim.lr", "seed")))
        status[tuple(swept)] = record["status"]
        if record["status"] == "failed":
            assert record["error"] == "optim.lr: must be a positive number, got -1.0"
    assert status == {("optim.lr=0.1", "seed=1"): "completed", ("optim.lr=0.1", "seed=2"): "completed",
                      ("optim.lr=-1", "seed=1"): "failed", ("optim.lr=-1", "seed=2"): "failed"}


def test_user_config_dir_and_any_working_directory(tmp_path):
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "tiny.yaml").write_text(textwrap.dedent("""\
        name: tiny
        layers:
          - conv: {out_channels: 4, kernel_size: 3, stride: 2}
          - relu
          - doubler: {factor: 2.0}
          - global_avgpool
          - linear:
              out_features: ${data.num_classes}
        """))
    (tmp_path / "mylayers.py").write_text(textwrap.dedent("""\
        from torch import nn
        from cnnrun import register

        @register("doubler", doc="multiplies by factor")
        def doubler(in_shape, *, factor=2.0):
            class Doubler(nn.Module):
                def forward(self, x):
                    return x * factor
            return Doubler(), in_shape
        """))
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = run_cli(["--config-dir", str(tmp_path / "mine"), "model=tiny", "mode=summary", "imports=[mylayers]"],
                   cwd=work, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((only_run(work) / "summary.json").read_text())
    assert summary["name"] == "tiny" and summary["total_params"] == 4 * 9 + 4 + 4 * 10 + 10
    assert [layer["type"] for layer in summary["layers"]][2] == "doubler"


def test_help_does_not_import_heavy_modules(tmp_path):
    code = ("import atexit, sys, runpy; sys.argv = ['cnnrun', '--help']\n"
            "atexit.register(lambda: print('HEAVY', [m for m in ('torch', 'pytorch_lightning', 'torchvision')\n"
            "                                         if m in sys.modules]))\n"
            "runpy.run_module('cnnrun', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "Compose your configuration" in proc.stdout or "cnnrun" in proc.stdout
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:]
