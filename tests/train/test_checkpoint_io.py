"""Checkpoints written by a writer thread (cnnrun/train/checkpoint_io.py) keep the guarantees of a synchronous save.

In short runs: each file holds the state of the moment it was saved, though training goes on and changes the
weights while the (slowed) writer works; the files equal those of a run that saves synchronously; the last write is
finished when ``run()`` returns; a write that fails fails the run (metrics.json: status failed, with the error),
whether the next save or the end of the fit finds it. On the plugin itself, with a stand-in CheckpointIO that
writes only when the test lets it: a load and a removal wait for the pending writes, a save waits while two are
pending, and the plugin survives pickling (ddp_spawn).
"""
import json
import pickle
import threading
import time
from pathlib import Path

import pytest
import torch
from lightning_fabric.plugins import CheckpointIO

from cnnrun import compose, run
from cnnrun.train import trainer as trainer_mod
from cnnrun.train.checkpoint_io import BackgroundCheckpointIO
from cnnrun.train.module import Classifier
from tests.conftest import QUIET

EPOCHS = 3
SHORT = [*QUIET, "logger=none", f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=3",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.train_fraction=0.2"]
TENSOR_PARTS = ("state_dict", "optimizer_states")


def tensors(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The checkpoint's weights and optimizer state as one flat name -> tensor mapping."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            flat[prefix] = value.detach().clone()
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)

    for part in TENSOR_PARTS:
        walk(part, checkpoint[part])
    return flat


def assert_equal_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


WRITER_THREAD_PAYS = trainer_mod.writer_thread_pays


@pytest.fixture(autouse=True)
def writer_thread(monkeypatch):
    """The runs below write through the writer thread whatever this machine's cores and torch threads (a run uses it
    when a core is left for it: test_the_writer_thread_is_used_when_a_core_is_left_for_it)."""
    monkeypatch.setattr(trainer_mod, "writer_thread_pays", lambda accelerator: True)


def test_the_writer_thread_is_used_when_a_core_is_left_for_it(monkeypatch):
    import joblib

    monkeypatch.setattr(trainer_mod, "writer_thread_pays", WRITER_THREAD_PAYS)
    monkeypatch.setattr(joblib, "cpu_count", lambda: 4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)  # every core runs a torch thread: the training thread writes
        assert not isinstance(trainer_mod.run_checkpoint_io("cpu"), BackgroundCheckpointIO)
        assert isinstance(trainer_mod.run_checkpoint_io("gpu"), BackgroundCheckpointIO)
        torch.set_num_threads(3)
        assert isinstance(trainer_mod.run_checkpoint_io("cpu"), BackgroundCheckpointIO)
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def slow_writes(monkeypatch):
    """The atomic writer sleeps before each write (training goes on meanwhile) and records what each write put in
    the file, read back from it: (file name, epoch, tensors)."""
    io_class = trainer_mod._atomic_checkpoint_io_class()
    original = io_class.save_checkpoint
    written = []

    def slow(self, checkpoint, path, storage_options=None):
        time.sleep(0.15)
        original(self, checkpoint, path, storage_options)
        stored = load(path)
        written.append((Path(path).name, stored["epoch"], tensors(stored)))

    monkeypatch.setattr(io_class, "save_checkpoint", slow)
    return written


def test_each_file_holds_the_state_it_was_saved_with_and_equals_a_synchronous_save(tmp_path, monkeypatch,
                                                                                   slow_writes):
    saved = []  # the state at each save, copied on the training thread when Lightning assembles the checkpoint
    monkeypatch.setattr(Classifier, "on_save_checkpoint",
                        lambda self, checkpoint: saved.append((checkpoint["epoch"], tensors(checkpoint))),
                        raising=False)
    run(compose(SHORT), output_dir=tmp_path / "background")
    assert len(slow_writes) == len(saved) >= EPOCHS
    for (name, epoch, in_file), (saved_epoch, at_save) in zip(slow_writes, saved):
        assert epoch == saved_epoch
        assert_equal_tensors(in_file, at_save)  # not the weights of a later step

    monkeypatch.undo()
    monkeypatch.setattr(trainer_mod, "writer_thread_pays", lambda accelerator: False)  # write, then go on
    run(compose(SHORT), output_dir=tmp_path / "synchronous")
    for name in ("best.ckpt", "last.ckpt"):
        background, synchronous = (load(tmp_path / kind / "checkpoints" / name)
                                   for kind in ("background", "synchronous"))
        assert (background["epoch"], background["global_step"]) == (synchronous["epoch"], synchronous["global_step"])
        assert_equal_tensors(tensors(background), tensors(synchronous))


@pytest.mark.filterwarnings("ignore:.*could not find the monitored key")  # no validation: no val/acc
def test_the_last_write_is_finished_when_run_returns(tmp_path, slow_writes):
    """Without validation there is no best.ckpt and the test loads no checkpoint: only the end of the fit waits."""
    run(compose([*SHORT, "trainer.limit_val_batches=0"]), output_dir=tmp_path)
    last = load(tmp_path / "checkpoints" / "last.ckpt")
    assert last["epoch"] == EPOCHS - 1 and last["global_step"] == 3 * EPOCHS
    assert [epoch for _, epoch, _ in slow_writes] == list(range(EPOCHS))
    assert not [t for t in threading.enumerate() if t.name.startswith("cnnrun-checkpoint-writer")]


@pytest.mark.parametrize("failing", ["first", "last"])
def test_a_failed_write_fails_the_run(tmp_path, monkeypatch, failing):
    """The first write's failure is found by the next save; the last one's only by the end of the fit."""
    io_class = trainer_mod._atomic_checkpoint_io_class()
    original = io_class.save_checkpoint
    calls = []

    def flaky(self, checkpoint, path, storage_options=None):
        calls.append(Path(path).name)
        last = Path(path).name == "last.ckpt" and checkpoint["epoch"] == EPOCHS - 1
        if (failing == "first" and len(calls) == 1) or (failing == "last" and last):
            raise OSError(28, "No space left on device")
        original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(io_class, "save_checkpoint", flaky)
    with pytest.raises(OSError, match="No space left on device"):
        run(compose(SHORT), output_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"] == "OSError: [Errno 28] No space left on device"
    assert "test/acc" not in record.get("metrics", {})  # the run stopped there: no test


# -- the plugin, with a stand-in CheckpointIO ---------------------------------------------------------------------
class GatedIO(CheckpointIO):
    """torch.save / torch.load / unlink, where each save waits until the test opens the gate."""

    def __init__(self):
        self.gate = threading.Event()

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        assert self.gate.wait(10)
        torch.save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return torch.load(path, weights_only=True)

    def remove_checkpoint(self, path):
        Path(path).unlink()


def open_gate_later(io: GatedIO, seconds: float = 0.2) -> threading.Timer:
    timer = threading.Timer(seconds, io.gate.set)
    timer.start()
    return timer


def test_a_load_waits_for_the_pending_write(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"v": torch.tensor(1)}, path)
    io = BackgroundCheckpointIO(GatedIO())
    io.save_checkpoint({"v": torch.tensor(2)}, path)
    open_gate_later(io.checkpoint_io)
    assert io.load_checkpoint(path)["v"].item() == 2
    io.teardown()


def test_a_removed_file_is_not_written_again_by_a_pending_write(tmp_path):
    path = tmp_path / "x.ckpt"
    io = BackgroundCheckpointIO(GatedIO())
    io.save_checkpoint({"v": torch.tensor(1)}, path)
    open_gate_later(io.checkpoint_io)
    io.remove_checkpoint(path)
    io.teardown()
    assert not path.exists()


def test_a_save_waits_while_two_writes_are_pending(tmp_path):
    io = BackgroundCheckpointIO(GatedIO())
    io.save_checkpoint({"v": torch.tensor(1)}, tmp_path / "a.ckpt")
    io.save_checkpoint({"v": torch.tensor(2)}, tmp_path / "b.ckpt")  # best and last of one epoch: no wait
    third = threading.Thread(target=io.save_checkpoint, args=({"v": torch.tensor(3)}, tmp_path / "c.ckpt"))
    third.start()
    third.join(0.2)
    assert third.is_alive()  # held until the first write is done
    io.checkpoint_io.gate.set()
    third.join(10)
    io.teardown()
    assert [load(tmp_path / f"{n}.ckpt")["v"].item() for n in "abc"] == [1, 2, 3]


def test_the_plugin_survives_pickling_with_its_writer(tmp_path):
    io = BackgroundCheckpointIO(trainer_mod.atomic_checkpoint_io())
    io.save_checkpoint({"v": torch.tensor(1)}, tmp_path / "a.ckpt")  # a started writer thread and a lock
    copy = pickle.loads(pickle.dumps(io))
    io.teardown()
    assert type(copy) is BackgroundCheckpointIO and type(copy.checkpoint_io) is type(io.checkpoint_io)
    copy.save_checkpoint({"v": torch.tensor(2)}, tmp_path / "b.ckpt")
    copy.teardown()
    assert load(tmp_path / "b.ckpt")["v"].item() == 2
