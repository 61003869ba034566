"""Crash-safe files: a training process killed with SIGKILL at any instant leaves only complete files (each one
parses, every checkpoint loads with ``weights_only=True``), and a write that fails (a full disk, a read-only folder)
gives one error naming the path and leaves the previous file intact.

The kill test runs a harness (this module run as a script, ``python -m tests.test_atomic``): it imports torch,
Lightning and cnnrun once, then forks one real training process (``cnnrun.run``, checkpoints every epoch) per
instant, all into the same run folder so that every kill can land on a file being replaced. A child reports when
each ``torch.save`` starts and ends through a pipe; the parent kills it at a random instant of one of four phases,
anchored at those reports: start-up (from the fork to the first checkpoint), training (between two checkpoints),
a checkpoint write (while ``torch.save`` streams the file), and the end (after the last checkpoint: the test, the
final metrics.json; a run that ends before its instant is started again with a new one). After each kill the parent
checks every file with the plain parsers (json, yaml, torch.load) and prints one JSON line, which the test reads.
"""
from __future__ import annotations

import errno
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PHASES = ("start-up", "training", "checkpoint write", "end")
SEED, KILLS = 20240613, 24
# A small training with a 2M-parameter hidden layer: a 17 MB checkpoint (weights and momentum), so that saving it
# takes long enough for kills to land inside the write; 3 short epochs, a checkpoint (best and last) after each.
RUN_OVERRIDES = ["callbacks.progress_bar.refresh_rate=0", "logger=none", "trainer.max_epochs=3",
                 "trainer.limit_train_batches=4", "trainer.limit_val_batches=4", "trainer.limit_test_batches=2"]
HIDDEN = 2048
LAYERS = ["flatten", {"linear": {"out_features": HIDDEN}}, "relu", {"linear": {"out_features": 10}}]


# -- the harness (runs in its own process) ------------------------------------------------------------------------
def _child(cfg, run_dir: Path, report_fd: int) -> None:
    """One training run in a forked process; reports b's'/b'e' around every torch.save. Never returns."""
    code = 1
    try:
        import torch

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        real_save = torch.save

        def reporting_save(*args, **kwargs):
            os.write(report_fd, b"s")
            real_save(*args, **kwargs)
            os.write(report_fd, b"e")

        torch.save = reporting_save
        from cnnrun import run

        run(cfg, output_dir=run_dir)
        code = 0
    finally:
        os._exit(code)


def _start(cfg, run_dir: Path):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(cfg, run_dir, write_fd)
    os.close(write_fd)
    return pid, read_fd


def _next_event(fd: int, timeout: float | None = None) -> bytes | None:
    """The child's next report (b's' or b'e'), b'' when it exited, None after ``timeout`` seconds."""
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 1) if ready else None


def timeline(cfg, run_dir: Path) -> dict:
    """One complete run: when each checkpoint write started and ended, and when the process ended (seconds)."""
    t0 = time.monotonic()
    pid, fd = _start(cfg, run_dir)
    starts, ends = [], []
    while (event := _next_event(fd)) != b"":
        (starts if event == b"s" else ends).append(time.monotonic() - t0)
    os.waitpid(pid, 0)
    os.close(fd)
    return {"starts": starts, "ends": ends, "exit": time.monotonic() - t0}


def plan(rng: random.Random, line: dict, phase: str) -> tuple[str, int, float]:
    """(anchor event, its index, delay after it): a random instant of ``phase``, measured on the complete run."""
    starts, ends, n = line["starts"], line["ends"], len(line["starts"])
    if phase == "start-up":
        return "fork", 0, rng.uniform(0, starts[0])
    if phase == "checkpoint write":
        k = rng.randrange(n)
        return "s", k, rng.uniform(0, ends[k] - starts[k])
    if phase == "training":  # the gaps between epochs (best.ckpt and last.ckpt are written back to back)
        gaps = [(starts[k + 1] - ends[k], k) for k in range(n - 1)]
        k = rng.choice([k for gap, k in gaps if gap >= 0.5 * max(gaps)[0]])
        return "e", k, rng.uniform(0, starts[k + 1] - ends[k])
    return "e", n - 1, rng.uniform(0, line["exit"] - ends[-1])


def kill_at(cfg, run_dir: Path, anchor: str, index: int, delay: float) -> dict:
    """Start a run and SIGKILL it ``delay`` seconds after its ``index``-th ``anchor`` report."""
    pid, fd = _start(cfg, run_dir)
    seen = {"s": 0, "e": 0}
    alive = True
    if anchor != "fork":
        while True:
            event = _next_event(fd)
            if event == b"":
                alive = False
                break
            seen[event.decode()] += 1
            if event.decode() == anchor and seen[anchor] == index + 1:
                break
    if alive:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    while (event := _next_event(fd, 0)) not in (b"", None):  # what the child reported before it died
        seen[event.decode()] += 1
    os.close(fd)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return {"killed": killed, "saves_started": seen["s"], "saves_ended": seen["e"]}


def check_files(run_dir: Path) -> dict:
    """Each file of the run folder, parsed by the plain readers: name -> 'ok' or what failed; and the temporary
    files left by interrupted writes."""
    import torch
    import yaml

    from cnnrun.atomic import is_temporary

    files, temporaries = {}, []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        name = str(path.relative_to(run_dir))
        if is_temporary(path):
            temporaries.append(name)
            continue
        try:
            if path.suffix == ".json":
                assert isinstance(json.loads(path.read_text()), dict)
            elif path.suffix == ".yaml":
                assert isinstance(yaml.safe_load(path.read_text()), dict)
            elif path.suffix == ".ckpt":
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
                assert ckpt["state_dict"]["model.layers.1.weight"].shape == (HIDDEN, 1024)
            else:
                raise AssertionError("a file the run should not write")
            files[name] = "ok"
        except Exception as err:  # noqa: BLE001 - every failure is a finding
            files[name] = f"{type(err).__name__}: {err}"[:300]
    return {"files": files, "temporaries": temporaries}


def harness(work: Path, seed: int, kills: int) -> None:
    """Print one JSON line for the complete run, then one per kill."""
    import torch
    import pytorch_lightning  # noqa: F401 - imported once, before the forks

    from cnnrun import compose

    torch.set_num_threads(1)
    cfg = compose(RUN_OVERRIDES)
    cfg.model.layers = LAYERS
    run_dir = work / "run"
    line = timeline(cfg, run_dir)
    print(json.dumps({"timeline": line, **check_files(run_dir)}), flush=True)
    rng = random.Random(seed)
    for i in range(kills):
        phase = PHASES[i % len(PHASES)]
        for attempt in range(1, 6):  # a run faster than the measured one may end before an instant near its end
            anchor, index, delay = plan(rng, line, phase)
            outcome = kill_at(cfg, run_dir, anchor, index, delay)
            if outcome["killed"]:
                break
        print(json.dumps({"phase": phase, "anchor": [anchor, index], "delay": round(delay, 4), "attempts": attempt,
                          **outcome, **check_files(run_dir)}), flush=True)


# -- the tests ----------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks its training processes")
def test_sigkill_at_random_instants_leaves_only_complete_files(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.test_atomic", str(tmp_path), str(SEED), str(KILLS)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, *kills = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    line = first["timeline"]
    assert len(line["starts"]) == len(line["ends"]) >= 4  # checkpoints were written in every epoch
    expected = {"config.yaml", "summary.json", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"}
    assert first["files"] == {name: "ok" for name in expected} and first["temporaries"] == []
    assert len(kills) == KILLS
    for k in kills:
        bad = {name: result for name, result in k["files"].items() if result != "ok"}
        assert not bad, (k["phase"], k["delay"], bad)
        assert set(k["files"]) == expected, k  # each file present: the previous or the new complete one
    landed = [k for k in kills if k["killed"]]
    assert len(landed) >= 20
    for phase in PHASES:
        assert sum(k["phase"] == phase for k in landed) >= 5, phase
    # kills inside a checkpoint write (torch.save had started and not ended) did happen
    assert sum(k["saves_started"] > k["saves_ended"] for k in landed) >= 3
    # stray temporary files of interrupted writes are hidden and never taken for a job's files by the report
    from cnnrun.report.runs import read_sweep

    jobs, _ = read_sweep(tmp_path)
    assert [j.dir.name for j in jobs] == ["run"] and jobs[0].status == "completed"
    for k in kills:
        assert all(Path(t).name.startswith(".") and t.endswith(".tmp") for t in k["temporaries"])


def test_a_full_disk_keeps_the_previous_file_and_names_the_path(tmp_path, monkeypatch):
    """An OSError(ENOSPC) half-way through writing: WriteError naming the file, the previous file byte for byte,
    no temporary file left behind."""
    import cnnrun.atomic as atomic
    from cnnrun.record import RunRecord

    RunRecord(status="completed", metrics={"test/acc": 0.5}).write(tmp_path)
    before = (tmp_path / "metrics.json").read_bytes()
    real_open = atomic._open_new

    class FillsUp:
        """A file on a disk that is full after the first few bytes."""

        def __init__(self, path):
            self.file = real_open(path)

        def write(self, data):
            self.file.write(data[:8])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(atomic, "_open_new", FillsUp)
    with pytest.raises(atomic.WriteError) as info:
        RunRecord(status="failed", error="x" * 1000).write(tmp_path)
    assert str(info.value) == f"cannot write {tmp_path / 'metrics.json'}: No space left on device"
    assert info.value.errno == errno.ENOSPC
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]



def test_a_full_disk_during_training_fails_the_run_with_a_valid_record(tmp_path, monkeypatch, quick_cfg):
    """The disk fills up at the second epoch's checkpoint: the run fails with the checkpoint's path in its error, in
    a metrics.json that parses; the first epoch's checkpoints are intact."""
    import torch

    import cnnrun.atomic as atomic
    from cnnrun import run

    real_open, checkpoint_writes = atomic._open_new, []

    def open_on_a_filling_disk(path):
        if path.name.startswith((".best.ckpt.", ".last.ckpt.")):
            checkpoint_writes.append(path.name)
            if len(checkpoint_writes) > 2:  # best and last of the first epoch fit
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path)

    monkeypatch.setattr(atomic, "_open_new", open_on_a_filling_disk)
    with pytest.raises(atomic.WriteError):
        run(quick_cfg("logger=none", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2"),
            output_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    failed = checkpoint_writes[2].split(".")[1]  # .<name>.ckpt.<pid>.<token>.tmp
    assert record["status"] == "failed"
    assert record["error"] == (f"WriteError: cannot write {tmp_path / 'checkpoints' / failed}.ckpt: "
                               f"No space left on device")
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.load(tmp_path / "checkpoints" / name, weights_only=True)["epoch"] == 0
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def unprivileged() -> list[str]:
    """A command prefix under which a read-only folder is read-only: none for a normal user; root keeps its other
    privileges but loses those that override file permissions (util-linux's setpriv)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores folder permissions, and setpriv is not installed to drop that privilege")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def test_an_unwritable_run_folder_is_one_error_before_anything_runs(read_only, tmp_path):
    """The CLI (a run folder inside a read-only folder) and run() (a read-only run folder): one error naming the
    folder and the setting that chose it; exit status 2; nothing written."""
    cli = subprocess.run([*unprivileged(), sys.executable, "-m", "cnnrun", f"hydra.run.dir={read_only / 'run'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2, cli.stderr[-2000:]
    assert cli.stderr.splitlines() == [f"error: hydra.run.dir: cannot write {read_only / 'run'}: Permission denied"]
    code = ("from cnnrun import ConfigError, run\n"
            "try:\n"
            f"    run({{}}, output_dir={str(read_only)!r})\n"
            "except ConfigError as err:\n"
            "    print(err)\n")
    api = subprocess.run([*unprivileged(), sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert api.returncode == 0, api.stderr[-2000:]
    assert api.stdout.splitlines() == [f"output_dir: cannot write {read_only}: Permission denied"]
    assert list(read_only.iterdir()) == []



def test_an_unwritable_checkpoint_folder_fails_the_run_in_one_line(tmp_path):
    """The CLI, when the first checkpoint cannot be written (its folder is read-only): one line naming the file,
    exit status 1, and metrics.json (still writable) records the failure."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints").chmod(0o555)
    try:
        proc = subprocess.run([*unprivileged(), sys.executable, "-m", "cnnrun", f"hydra.run.dir={run_dir}",
                               "logger=none", "callbacks.progress_bar.refresh_rate=0", "trainer.max_epochs=1",
                               "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        (run_dir / "checkpoints").chmod(0o755)
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = f"cannot write {run_dir / 'checkpoints' / 'best.ckpt'}: Permission denied"
    assert proc.stderr.strip().splitlines()[-1] == f"error: {line}" and "Traceback" not in proc.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"] == f"WriteError: {line}"


if __name__ == "__main__":
    harness(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
