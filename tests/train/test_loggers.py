"""logger=: TensorBoard, CSV and MLflow (optional), alone or together; every one gets the epochs' scalars and the
run's hyperparameters."""
import csv
import importlib.util
import json

import pytest
import yaml

from cnnrun import ConfigError, compose, run
from tests.conftest import QUIET

SHORT = [*QUIET, "trainer.max_epochs=2", "trainer.limit_train_batches=3"]


def history(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["history"]


def csv_rows(run_dir):
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_csv_logger_writes_every_epoch_and_the_hyperparameters(tmp_path):
    run(compose([*SHORT, "logger=csv"]), output_dir=tmp_path)
    rows = csv_rows(tmp_path)
    val = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert val == pytest.approx([h["val/acc"] for h in history(tmp_path)])
    assert any(r.get("test/acc") for r in rows) and any(r.get("train_eval/gap") for r in rows)
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert hparams == {"seed": 0}  # a Python-API run: its seed (and method); the rest is in config.yaml
    assert not (tmp_path / "tensorboard").exists()


def test_tensorboard_and_csv_together(tmp_path):
    run(compose([*SHORT, "logger=[tensorboard,csv]", "logger.dashboards=false"]), output_dir=tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len([r for r in csv_rows(tmp_path) if r.get("val/acc")]) == 2


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed")
def test_mlflow_without_its_package_is_a_config_error_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"^logger.mlflow: needs the mlflow package: pip install 'cnnrun\[mlflow\]'"):
        run(compose([*SHORT, "logger=mlflow"]), output_dir=tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="the optional mlflow extra is not installed")
def test_mlflow_logs_into_a_local_store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run(compose([*SHORT, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}"]), output_dir=tmp_path / "run")
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("cnnrun").experiment_id])
    assert found.info.run_name == "run" and found.data.params["optim.lr"] == "0.1"
    val = [m.value for m in client.get_metric_history(found.info.run_id, "val/acc")]
    assert val == pytest.approx([h["val/acc"] for h in history(tmp_path / "run")])


def test_epoch_scalars_are_logged_against_the_epoch_from_1(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(compose([*SHORT, "trainer.max_epochs=3", "logger.dashboards=false"]), output_dir=tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "epoch" not in tags and "step" not in tags
    for tag in ("train/loss", "train/acc", "train/lr", "val/loss", "val/acc"):
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3], tag
    assert [e.step for e in events.Scalars("test/acc")] == [3]  # the test sits at the last epoch
