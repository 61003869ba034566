"""The dashboards' writer thread (cnnrun/train/deferred_writer.py): pictures written in order, stamped with the time
they were made, finished before the run's logger closes, a failed write raised on the training thread; in place
where no core is left for a thread."""
import threading
import time

import pytest
from torch.utils.tensorboard import SummaryWriter

from cnnrun import compose, run
from cnnrun.train import dashboards as D
from cnnrun.train import trainer as trainer_mod
from cnnrun.train.deferred_writer import DeferredWriter
from tests.conftest import QUIET
from tests.train.test_dashboards import read_events


class SlowWriter:
    """Records each call (its arguments, thread and when it ran), after a pause that stands for the encoding."""

    def __init__(self, pause=0.05, fail_on=None):
        self.calls, self.pause, self.fail_on = [], pause, fail_on

    def add_image(self, tag, image, global_step, walltime=None):
        time.sleep(self.pause)
        if tag == self.fail_on:
            raise OSError(f"disk full writing {tag}")
        self.calls.append({"tag": tag, "step": global_step, "walltime": walltime, "ran": time.time(),
                           "thread": threading.current_thread().name})

    def flush(self):
        self.calls.append({"tag": "flush", "thread": threading.current_thread().name})


def test_pictures_are_written_by_one_thread_in_order_with_the_time_they_were_made():
    writer = SlowWriter()
    deferred = DeferredWriter(writer, background=True)
    made = []
    started = time.perf_counter()
    for k in range(4):
        made.append(time.time())
        deferred.add_image(f"img{k}", None, k)
    handed_over = time.perf_counter() - started
    assert handed_over < 2 * writer.pause  # the caller did not wait for four pauses
    deferred.flush()  # waits for the pending writes, then flushes
    assert [c["tag"] for c in writer.calls] == ["img0", "img1", "img2", "img3", "flush"]
    images = writer.calls[:4]
    assert {c["thread"] for c in images} != {threading.current_thread().name}
    assert len({c["thread"] for c in images}) == 1
    for call, when in zip(images, made):
        assert when <= call["walltime"] <= when + writer.pause / 2 < call["ran"]  # stamped when made, not when run


def test_a_failed_write_is_raised_where_the_writes_are_awaited_and_the_thread_goes():
    writer = SlowWriter(pause=0.01, fail_on="img1")
    deferred = DeferredWriter(writer, background=True)
    for k in range(3):
        deferred.add_image(f"img{k}", None, k)
    with pytest.raises(OSError, match="disk full writing img1"):
        deferred.wait()
    assert [c["tag"] for c in writer.calls] == ["img0", "img2"]
    assert not [t for t in threading.enumerate() if t.name.startswith("cnnrun-dashboards")]
    deferred.wait()  # raised once


def test_without_background_the_writes_happen_in_place():
    writer = SlowWriter(pause=0)
    deferred = DeferredWriter(writer, background=False)
    deferred.add_image("img", None, 3)
    assert writer.calls[0]["thread"] == threading.current_thread().name and writer.calls[0]["walltime"] is None


@pytest.mark.parametrize("pays", [True, False])
def test_the_dashboards_use_the_thread_only_where_a_core_is_left_for_it(monkeypatch, pays):
    monkeypatch.setattr(trainer_mod, "writer_thread_pays", lambda accelerator: pays)
    from pytorch_lightning.loggers import TensorBoardLogger

    cfg = {"logger": {"dashboards": True}, "trainer": {"accelerator": "cpu"}}
    (callback,) = D.make_dashboards(cfg, TensorBoardLogger("unused"))
    assert callback.background is pays


def test_a_run_ends_after_its_slowest_picture_is_written(monkeypatch, tmp_path):
    """Every periodic picture of every epoch and the test's figures are in the event files when run() returns, with
    each picture's encoding slowed down on the writer thread."""
    monkeypatch.setattr(trainer_mod, "writer_thread_pays", lambda accelerator: True)
    threads = set()
    add_image = SummaryWriter.add_image

    def slow(self, *args, **kwargs):
        time.sleep(0.1)
        threads.add(threading.current_thread().name)
        return add_image(self, *args, **kwargs)

    monkeypatch.setattr(SummaryWriter, "add_image", slow)
    run(compose([*QUIET, "trainer.max_epochs=2", "trainer.limit_train_batches=3",
                 "logger.dashboards.filters.every_n_epochs=1", "logger.dashboards.feature_maps.every_n_epochs=1"]),
        output_dir=tmp_path)
    images = read_events(tmp_path)["images"]
    assert threads and all(name.startswith("cnnrun-dashboards") for name in threads)
    assert [e.step for e in images["filters/first_layer"]] == [1, 2]
    assert [e.step for e in images["feature_maps/input"]] == [1, 2]
    assert len(images["test/confusion_matrix"]) == len(images["test/misclassified"]) == 1


def test_a_picture_that_cannot_be_written_fails_the_run_and_its_record_says_why(monkeypatch, tmp_path):
    import json

    monkeypatch.setattr(trainer_mod, "writer_thread_pays", lambda accelerator: True)
    add_image = SummaryWriter.add_image

    def full_disk(self, tag, *args, **kwargs):
        if tag == "filters/first_layer":
            raise OSError(28, "No space left on device")
        return add_image(self, tag, *args, **kwargs)

    monkeypatch.setattr(SummaryWriter, "add_image", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        run(compose([*QUIET, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]), output_dir=tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert not [t for t in threading.enumerate() if t.name.startswith("cnnrun-dashboards")]
