"""The run record (metrics.json as one type) and the atomic writer every run file goes through, checked against the
JSON layout written out here and against the operating system's calls (os.replace, os.fsync)."""
import errno
import json
import os
from pathlib import Path

import pytest

from cnnrun.atomic import WriteError, atomic_write, check_writable, unwritable_cause
from cnnrun.record import RunRecord

# metrics.json's keys as users and earlier versions read them: the core ones in this order, always present
CORE = ["status", "error", "metrics", "params", "duration_s", "overrides", "seed", "mode", "run_dir", "started_at",
        "host", "launch", "method"]


def read_json(folder):
    return json.loads((Path(folder) / "metrics.json").read_text())


def test_the_core_keys_are_always_written_and_the_others_only_when_set(tmp_path):
    RunRecord(status="failed", error="boom", overrides=["seed=1"]).write(tmp_path)
    data = read_json(tmp_path)
    assert list(data) == CORE
    assert data == {**dict.fromkeys(CORE), "status": "failed", "error": "boom", "metrics": {}, "overrides": ["seed=1"]}
    RunRecord(status="completed", data_sizes={"train": 3}, history=[{"epoch": 0, "val/acc": 0.5}],
              best_checkpoint=None).write(tmp_path)
    data = read_json(tmp_path)
    assert list(data) == [*CORE, "data_sizes", "history"]  # unset fields (best_checkpoint: None) stay out
    assert data["data_sizes"] == {"train": 3} and data["history"] == [{"epoch": 0, "val/acc": 0.5}]


def test_a_full_record_survives_the_round_trip(tmp_path):
    full = RunRecord(status="pruned", error=None, metrics={"val/acc": 0.25}, params=10, duration_s=1.5,
                     overrides=["a=1"], seed=3, mode="train", run_dir=str(tmp_path), started_at="2024-01-01T00:00:00",
                     host="h", launch="abc", method="augment", resources={"threads": 1}, data_sizes={"train": 1},
                     class_counts={"train": [1]}, fit_s=1.0, time_to_first_step_s=0.5, best_checkpoint="b.ckpt",
                     selected={"epoch": 0}, best_val_acc=0.25, distributed={"world": 2}, epochs=1,
                     history=[{"epoch": 0}], diverged_at={"epoch": 0, "step": 1}, pruned_at={"epoch": 0},
                     traceback="tb", gallery="g.png", extra={"future": [1, 2]})
    full.write(tmp_path)
    assert RunRecord.read(tmp_path) == full
    assert read_json(tmp_path)["future"] == [1, 2] and read_json(tmp_path)["gallery"] == "g.png"


def test_older_and_hand_written_files_are_read_with_defaults_and_unknown_keys_kept(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": None, "seed": 2, "overrides": None,
                                                       "legacy_key": {"x": 1}}))
    record = RunRecord.read(tmp_path)
    assert record.status == "unknown" and record.metrics == {} and record.overrides == [] and record.seed == 2
    assert record.history is None and record.extra == {"legacy_key": {"x": 1}} and record.written
    record.status = "completed"
    record.write(tmp_path)
    assert read_json(tmp_path)["legacy_key"] == {"x": 1}  # what this version does not know, it keeps


@pytest.mark.parametrize("content,status", [
    (None, "unfinished"),  # no metrics.json: the job is running or was killed
    ('{"status": "completed", "metr', "unreadable"),  # cut off (written by something else than cnnrun)
    ("[1, 2]", "unreadable"),
    (b"\xff\xfe", "unreadable"),
])
def test_missing_and_broken_files_read_as_what_they_are(tmp_path, content, status):
    if isinstance(content, str):
        (tmp_path / "metrics.json").write_text(content)
    elif content is not None:
        (tmp_path / "metrics.json").write_bytes(content)
    record = RunRecord.read(tmp_path)
    assert record.status == status and not record.written and record.metrics == {}
    assert record.error.startswith("no metrics.json" if content is None else "metrics.json: ")


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    RunRecord(status="completed").write(tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_the_writer_syncs_a_hidden_temporary_file_then_renames_it(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.fstat(fd).st_size)), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (calls.append(("replace", Path(src), Path(dst))),
                                                         real_replace(src, dst))[1])
    target = tmp_path / "table.csv"
    atomic_write(target, lambda f: f.write(b"a,b\n1,2\n"))
    assert calls[0] == ("fsync", 8)  # the whole content is on the disk before the name points to it
    _, src, dst = calls[1]
    assert dst == target and src.parent == tmp_path and src.name.startswith(".table.csv.") \
        and src.name.endswith(".tmp")
    assert target.read_bytes() == b"a,b\n1,2\n" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_a_failing_content_writer_leaves_the_previous_file(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("seed: 1\n")

    def half_then_crash(f):
        f.write(b"seed: ")
        raise RuntimeError("serialiser crashed")

    with pytest.raises(RuntimeError, match="serialiser crashed"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "seed: 1\n" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_check_writable_leaves_nothing_and_names_a_folder_that_is_not_one(tmp_path):
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError) as info:
        check_writable(tmp_path / "file")
    assert str(info.value) == f"cannot write {tmp_path / 'file'}: Not a directory"


def test_unwritable_causes_are_found_behind_wrapping_errors():
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied", "/x/run.log")
        except PermissionError as inner:
            raise ValueError("Unable to configure handler 'file'") from inner
    except ValueError as outer:
        cause = unwritable_cause(outer)
    assert isinstance(cause, WriteError) and str(cause) == "cannot write /x/run.log: Permission denied"
    assert unwritable_cause(FileNotFoundError(errno.ENOENT, "No such file", "/data/x.csv")) is None
    assert unwritable_cause(ValueError("no OSError behind")) is None
