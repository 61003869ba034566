"""The 1D and 3D models train on the data sets they were written for, end to end through run()."""
import json

from cnnrun import compose, run

QUICK = ["trainer.max_epochs=1", "logger=none", "callbacks.progress_bar.refresh_rate=0"]


def test_cnn1d_learns_mnist1d(tmp_path):
    metrics = run(compose(["model=cnn1d", "data=mnist1d", "optim=adam", "trainer.max_epochs=3", *QUICK[1:]]),
                  output_dir=tmp_path)
    assert metrics["test/acc"] > 0.3  # 10 classes: chance is 0.1
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["data_sizes"]["test"] == 1000 and record["status"] == "completed"


def test_c3d_trains_on_moving_digits(tmp_path):
    metrics = run(compose(["model=c3d", "data=moving_digits", "model.width=0.25", "data.num_samples=200",
                           "data.frames=8", "data.size=16", "data.digit_size=8", "trainer.limit_train_batches=3",
                           *QUICK]), output_dir=tmp_path)
    assert 0 <= metrics["test/acc"] <= 1 and metrics["train/loss"] > 0
