"""run(cfg) end to end in-process: the run folder, determinism, checkpoints, resume, divergence and failures."""
import json
import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from omegaconf import OmegaConf

from cnnrun import ConfigError, Diverged, compose, run
from cnnrun.layers.registry import LAYERS, register


def read_metrics(run_dir):
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def renames_into_place():
    """A spy on os.replace (how a file is put into place in one step): the names of the files it replaced."""
    real, names = os.replace, []

    def spy(src, dst, *args, **kwargs):
        names.append(Path(dst).name)
        return real(src, dst, *args, **kwargs)

    return mock.patch("os.replace", spy), names


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-epoch digits run shared by the tests that only read its folder; ``renamed``: the files it put into
    place by renaming."""
    from tests.conftest import QUIET

    out = tmp_path_factory.mktemp("run")
    spy, renamed = renames_into_place()
    with spy:
        metrics = run(compose([*QUIET, "trainer.max_epochs=2"]), output_dir=out)
    return out, metrics, renamed


def test_run_folder_holds_everything(trained):
    out, metrics, _ = trained
    for name in ("config.yaml", "summary.json", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    record = read_metrics(out)
    assert record["status"] == "completed" and record["error"] is None
    assert set(record["metrics"]) == {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc",
                                      "train_eval/loss", "train_eval/acc", "best/val_acc", "gap"}
    m = record["metrics"]
    assert m["gap"] == pytest.approx(m["train_eval/acc"] - m["best/val_acc"]) and m["best/val_acc"] >= m["val/acc"]
    assert record["metrics"] == metrics
    assert all(0.0 <= record["metrics"][k] <= 1.0 for k in ("train/acc", "val/acc", "test/acc"))
    assert record["metrics"]["test/acc"] > 0.5  # two epochs learn digits well above chance (0.1)
    assert record["params"] == 61_706 and record["seed"] == 0 and record["overrides"] == []
    assert record["duration_s"] > 0 and record["epochs"] == 2 and len(record["history"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total_params"] == 61_706 and len(summary["layers"]) == 12
    config = (out / "config.yaml").read_text()
    assert "stats:" in config and "${" not in config  # resolved, with the training-split statistics


def test_every_file_is_put_into_place_whole_and_config_yaml_once(trained):
    """Each run file is written beside its place and renamed into it (a reader or a kill never meets half a file):
    config.yaml, summary.json and metrics.json once each, last.ckpt after each of the two epochs."""
    out, _, renamed = trained
    assert {name: renamed.count(name) for name in ("config.yaml", "summary.json", "metrics.json", "last.ckpt")} == \
        {"config.yaml": 1, "summary.json": 1, "metrics.json": 1, "last.ckpt": 2}
    assert 1 <= renamed.count("best.ckpt") <= 2


def test_checkpoints_load_with_weights_only_and_test_mode_reproduces(trained, tmp_path):
    out, metrics, _ = trained
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(out / "checkpoints" / name, weights_only=True)
        assert ckpt["hyper_parameters"]["config"]["model"]["name"] == "lenet5"
    tested = run(compose(["mode=test", f"ckpt_path={out}/checkpoints/best.ckpt", "trainer.max_epochs=2"]),
                 output_dir=tmp_path)
    assert tested["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert tested["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)


def test_resume_from_last_checkpoint_continues_the_epochs(trained, tmp_path):
    out, _, _ = trained
    run(compose(["callbacks.progress_bar.refresh_rate=0", "trainer.max_epochs=3",
                 f"ckpt_path={out}/checkpoints/last.ckpt"]), output_dir=tmp_path)
    record = read_metrics(tmp_path)
    assert record["status"] == "completed"
    assert [h["epoch"] for h in record["history"]] == [2]  # epochs 0 and 1 came from the checkpoint
    # the optimizer-step count (trainer.global_step) goes on from the checkpoint's
    first = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert first > 0 and resumed == first * 3 // 2


def test_same_seed_same_metrics(quick_cfg, tmp_path):
    a = run(quick_cfg("seed=5", "trainer.max_epochs=1"), output_dir=tmp_path / "a")
    b = run(quick_cfg("seed=5", "trainer.max_epochs=1"), output_dir=tmp_path / "b")
    c = run(quick_cfg("seed=6", "trainer.max_epochs=1"), output_dir=tmp_path / "c")
    assert a == b
    assert a != c


def test_tensorboard_has_scalars_and_real_hparams(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, metrics, _ = trained
    scalars, hparams = {}, {}
    for events in sorted((out / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars[tag] = [e.value for e in acc.Scalars(tag)]
        try:
            content = acc.PluginTagToContent("hparams")
        except KeyError:
            content = {}
        if "_hparams_/session_start_info" in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
            hparams = {k: v for k, v in data.session_start_info.hparams.items()}
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "train/lr", "test/acc", "test/loss"):
        assert tag in scalars, tag
    assert len(scalars["val/acc"]) == 2
    assert scalars["test/acc"][-1] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert scalars["val/acc"][-1] == pytest.approx(metrics["val/acc"], abs=1e-6)
    assert not [tag for tag in scalars if tag.startswith("hp") or tag == "epoch"]
    # a run of the Python API has no command line: its hyperparameters are the seed (and the method, when chosen);
    # the rest of the config stays in config.yaml
    assert {k: v.number_value for k, v in hparams.items()} == {"seed": 0}
    assert scalars["train_eval/gap"] == [pytest.approx(metrics["gap"], abs=1e-6)]
    assert scalars["val/best_acc"] == [pytest.approx(metrics["best/val_acc"], abs=1e-6)]
    # no experiment summary: TensorBoard builds the table from all the runs' sessions (varying columns first)
    assert not experiment_summaries(out)


def experiment_summaries(out) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for events in sorted((out / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        try:
            found.append(acc.PluginTagToContent("hparams")["_hparams_/experiment"])
        except KeyError:
            continue
    return found


@pytest.mark.parametrize("override,key", [
    ("optim.lr=0", "optim.lr"), ("optim.lr=-1", "optim.lr"), ("data.batch_size=0", "data.batch_size"),
    ("trainer.max_epochs=0", "trainer.max_epochs"), ("optim.momentun=0.9", "optim.momentun"),
    ("+trainer.max_epoch=3", "trainer.max_epoch"), ("sched.warmup_epoch=1", "sched.warmup_epoch"),
    ("mode=fit", "mode"), ("model.activation=tanhh", "model.layers[1] (tanhh)"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val"),
    ("trainer.gradient_clip_algorithm=l2", "trainer.gradient_clip_algorithm"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
])
def test_config_errors_stop_before_training_and_are_recorded(override, key, tmp_path):
    cfg = compose([])
    if override.startswith("sched."):  # the cosine schedule has no warmup_epoch key: add it as a user would
        OmegaConf.set_struct(cfg, False)
    k, v = override.lstrip("+").split("=")
    OmegaConf.update(cfg, k, OmegaConf.create({"v": v})["v"] if not v.lstrip("-").isdigit() else int(v),
                     force_add=True)
    spy, renamed = renames_into_place()
    with pytest.raises(ConfigError) as info, spy:
        run(cfg, output_dir=tmp_path)
    assert str(info.value).startswith(f"{key}: ") or str(info.value).startswith(key)
    record = read_metrics(tmp_path)
    assert record["status"] == "failed" and record["error"] == str(info.value)
    assert not (tmp_path / "checkpoints").exists()
    # the config as far as it was known, written once (at the end: the run stopped before it was complete)
    assert sorted(renamed) == ["config.yaml", "metrics.json"]
    assert OmegaConf.load(tmp_path / "config.yaml").seed == 0


def test_summary_mode_writes_its_config_once(tmp_path):
    spy, renamed = renames_into_place()
    with spy:
        assert run(compose(["mode=summary"]), output_dir=tmp_path) == {}
    assert sorted(renamed) == ["config.yaml", "metrics.json", "summary.json"]
    assert read_metrics(tmp_path)["params"] == 61_706 and OmegaConf.load(tmp_path / "config.yaml").mode == "summary"


def test_divergence_stops_at_once_with_its_epoch_and_step(quick_cfg, tmp_path):
    with pytest.raises(Diverged) as info:
        run(quick_cfg("optim.lr=1e12", "trainer.max_epochs=3"), output_dir=tmp_path)
    record = read_metrics(tmp_path)
    assert record["status"] == "diverged"
    assert record["diverged_at"] == {"epoch": info.value.epoch, "step": info.value.step}
    assert info.value.epoch == 0 and f"step {info.value.step}" in record["error"]
    assert "checkpoints" not in {p.name for p in tmp_path.iterdir()} or \
        not (tmp_path / "checkpoints" / "best.ckpt").exists()


def test_a_crash_during_training_still_writes_metrics(quick_cfg, tmp_path):
    class Boom(torch.nn.Module):
        def forward(self, x):
            if self.training:
                raise RuntimeError("boom in forward")
            return x

    register("test_boom")(lambda in_shape: (Boom(), in_shape))
    try:
        cfg = quick_cfg()
        cfg.model.layers.insert(0, "test_boom")
        with pytest.raises(RuntimeError, match="boom in forward"):
            run(cfg, output_dir=tmp_path)
    finally:
        del LAYERS["test_boom"]
    record = read_metrics(tmp_path)
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom in forward"


def test_netvlad_kmeans_init_uses_training_descriptors(quick_cfg, tmp_path):
    from sklearn.cluster import KMeans

    from cnnrun.config import to_plain
    from cnnrun.train.module import Classifier

    cfg = to_plain(quick_cfg())
    cfg["model"] = {"name": "vlad", "layers": [{"conv": {"out_channels": 4, "kernel_size": 5, "stride": 3}}, "relu",
                                               {"netvlad": {"clusters": 3, "init": "kmeans",
                                                            "normalize_input": False}},
                                               {"linear": {"out_features": 10}}]}
    module = Classifier(cfg)
    x = torch.randn(16, 1, 32, 32)
    module.init_from_data(x)
    with torch.no_grad():
        desc = module.model.layers[1](module.model.layers[0](x))
    flat = desc.flatten(2).transpose(1, 2).reshape(-1, 4).double().numpy()
    expected = KMeans(n_clusters=3, n_init=3, random_state=0).fit(flat).cluster_centers_
    got = module.model.layers[2].centroids.detach().double().numpy()
    assert sorted(map(tuple, got.round(4))) == sorted(map(tuple, expected.round(4)))
    # and a short training run with it completes
    cfg_run = quick_cfg("trainer.max_epochs=1")
    cfg_run.model = cfg["model"]
    assert run(cfg_run, output_dir=tmp_path)["test/acc"] >= 0


def test_jobs_in_one_process_share_the_loaded_data():
    from cnnrun.config import to_plain
    from cnnrun.train.fit import load_data_cached

    data = to_plain(compose([]))["data"]
    first = load_data_cached(data)
    assert load_data_cached({**data, "batch_size": 64, "augment": {"crop": {"padding": 2}}}) is first
    other = load_data_cached({**data, "split_seed": 1})
    assert other is not first and not torch.equal(other.test_y, first.test_y)


def test_the_default_run_reaches_the_promised_accuracy(tmp_path):
    """The Quick start's promise: the default config (LeNet-5 on digits, 40 epochs, seed 0) tests at >= 97%."""
    from tests.conftest import QUIET

    metrics = run(compose(QUIET), output_dir=tmp_path)
    assert read_metrics(tmp_path)["metrics"]["test/acc"] == metrics["test/acc"] >= 0.97
