"""The trainer, callbacks and logger settings that cnnrun passes to Lightning or applies itself, each observed in a
short real run (or on the Trainer the run builds), against what the setting means: the dtype of the model's
outputs and weights under each precision, torch's cudnn.benchmark and deterministic-algorithms flags during
training, the epochs that validate, the batches that are evaluated, torch.compile's arguments, the checkpoint
files, the progress bar, the TensorBoard files, and the distributed settings of the Trainer."""
import json

import pytest
import torch
from torch import nn

from cnnrun import compose, run
from cnnrun.config import to_plain
from cnnrun.model.builder import CnnModel
from cnnrun.train import module as module_mod
from cnnrun.train.trainer import make_trainer
from tests.conftest import QUIET

ONE_STEP = [*QUIET, "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "data.train_fraction=0.2"]


def training_forwards(tmp_path, *overrides):
    """What the model saw in each training forward pass of a short run: the dtypes of its input, output and
    weights, and torch's cudnn.benchmark and deterministic-algorithms flags (restored after the run)."""
    seen = []
    original = CnnModel.forward
    flags = torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()

    def forward(self, x):
        out = original(self, x)
        if self.training:
            seen.append({"output": out.dtype, "weight": next(self.parameters()).dtype,
                         "benchmark": torch.backends.cudnn.benchmark,
                         "deterministic": torch.are_deterministic_algorithms_enabled()})
        return out

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(CnnModel, "forward", forward)
            run(compose([*ONE_STEP, *overrides]), output_dir=tmp_path)
    finally:
        torch.backends.cudnn.benchmark = flags[0]
        torch.use_deterministic_algorithms(flags[1])
    assert seen
    return seen


@pytest.mark.parametrize("precision,output,weight", [
    ("16-mixed", torch.bfloat16, torch.float32),  # autocast; on a CPU Lightning runs 16-mixed as bf16-mixed
    ("bf16-true", torch.bfloat16, torch.bfloat16),  # the weights themselves in bf16
])
def test_precision_sets_the_dtypes_of_training(tmp_path, precision, output, weight):
    (step,) = training_forwards(tmp_path, f"trainer.precision={precision}", "trainer.accelerator=cpu")
    assert (step["output"], step["weight"]) == (output, weight)


def test_benchmark_and_deterministic_set_torchs_flags_during_training(tmp_path):
    torch.backends.cudnn.benchmark = False  # the opposite of the settings beforehand: they must change it
    assert not torch.are_deterministic_algorithms_enabled()
    (step,) = training_forwards(tmp_path, "trainer.benchmark=true", "trainer.deterministic=true")
    assert step["benchmark"] is True and step["deterministic"] is True


def test_check_val_every_n_epoch_validates_every_nth_epoch(tmp_path):
    run(compose([*ONE_STEP, "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2"]), output_dir=tmp_path)
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert [h["epoch"] for h in history if "val/acc" in h] == [e for e in range(4) if (e + 1) % 2 == 0]


# Splits larger than one evaluation batch (512): 1200 test, 1120 validation and 1680 training samples, i.e. 3, 3 and
# 4 evaluation batches.
EVAL_BATCHES = ["data=synthetic", "data.input_shape=[1,16,16]", "data.num_samples=4000", "data.test_fraction=0.3",
                "data.val_fraction=0.4"]


def test_limit_batches_and_sanity_steps_bound_the_evaluation_batches(tmp_path):
    calls = {"sanity": 0, "val": 0, "test": 0}
    validation_step, test_step = module_mod.Classifier.validation_step, module_mod.Classifier.test_step

    def on_validation(self, batch, batch_idx):
        calls["sanity" if self.trainer.sanity_checking else "val"] += 1
        return validation_step(self, batch, batch_idx)

    def on_test(self, batch, batch_idx):
        calls["test"] += 1
        return test_step(self, batch, batch_idx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module_mod.Classifier, "validation_step", on_validation)
        patch.setattr(module_mod.Classifier, "test_step", on_test)
        run(compose([*QUIET, "logger=none", *EVAL_BATCHES, "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                     "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "trainer.num_sanity_val_steps=1"]),
            output_dir=tmp_path)
    sizes = json.loads((tmp_path / "metrics.json").read_text())["data_sizes"]
    assert sizes == {"train": 1680, "val": 1120, "test": 1200}  # 4, 3 and 3 batches of 512 unlimited
    # 2 of 3 validation batches; 2 of 3 test batches, then 2 of 4 for the training split evaluated as the test
    assert calls == {"sanity": 1, "val": 2, "test": 2 + 2}


def test_compile_passes_its_arguments_to_torch_compile(tmp_path, monkeypatch):
    seen = []

    def recording_compile(fn, *args, **kwargs):  # in place of torch.compile: records, compiles nothing
        seen.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", recording_compile)
    run(compose([*ONE_STEP, "trainer.compile={backend: eager, dynamic: false, mode: reduce-overhead}"]),
        output_dir=tmp_path)
    assert seen == [{"backend": "eager", "dynamic": False, "mode": "reduce-overhead"}]
    for value, expected in (("true", [{}]), ("false", [])):  # the model as a run sets it up
        seen.clear()
        module_mod.Classifier(to_plain(compose([f"trainer.compile={value}"]))).setup("fit")
        assert seen == expected


def trainer_for(tmp_path, *overrides):
    """The Trainer a run of these overrides trains with (built as run() builds it, nothing trained)."""
    return make_trainer(to_plain(compose(list(overrides))), tmp_path)


def test_the_progress_bar_follows_refresh_rate_and_enable_progress_bar(tmp_path):
    assert trainer_for(tmp_path, "callbacks.progress_bar.refresh_rate=7").progress_bar_callback.refresh_rate == 7
    assert trainer_for(tmp_path, "callbacks.progress_bar.refresh_rate=0").progress_bar_callback is None
    assert trainer_for(tmp_path, "callbacks.progress_bar.refresh_rate=7",
                       "trainer.enable_progress_bar=false").progress_bar_callback is None


def test_accelerator_and_the_distributed_settings_reach_the_trainer(tmp_path):
    from pytorch_lightning.accelerators import CPUAccelerator
    from pytorch_lightning.strategies import DDPStrategy

    assert isinstance(trainer_for(tmp_path, "trainer.accelerator=cpu").accelerator, CPUAccelerator)
    if not torch.cuda.is_available():  # a GPU asked for on a machine without one is refused, not ignored
        with pytest.raises(Exception, match="(?i)gpu|cuda"):
            trainer_for(tmp_path, "trainer.accelerator=gpu")
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=3"]
    trainer = trainer_for(tmp_path, *ddp, "trainer.sync_batchnorm=true")
    # strategy ddp starts the other processes by re-running the command (popen); ddp_spawn forks this one
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.strategy._start_method == "popen"
    assert trainer_for(tmp_path, *ddp, "trainer.strategy=ddp_spawn").strategy._start_method == "spawn"
    one = trainer_for(tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1").strategy
    assert isinstance(one, DDPStrategy)  # asked for, even where Lightning alone would pick a single device
    assert (trainer.num_devices, trainer.num_nodes, trainer.world_size) == (2, 3, 6)
    net = trainer.strategy._layer_sync.apply(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
    assert isinstance(net[1], nn.SyncBatchNorm)  # batch statistics over all processes
    assert trainer_for(tmp_path, *ddp).strategy._layer_sync is None


def test_save_last_false_writes_only_the_best_checkpoint_and_logger_none_no_tensorboard(tmp_path):
    run(compose([*ONE_STEP, "callbacks.checkpoint.save_last=false"]), output_dir=tmp_path)  # logger=none
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt"]
    assert not (tmp_path / "tensorboard").exists()


def summary_texts(run_dir):
    """The TensorBoard text entries of a run folder (tag -> texts)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    texts = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            if tag.endswith("/text_summary"):
                texts[tag.removesuffix("/text_summary")] = [e.tensor_proto.string_val[0].decode()
                                                           for e in acc.Tensors(tag)]
    return texts


def test_tensorboard_and_log_summary(tmp_path):
    logged = [*ONE_STEP, "logger=tensorboard", "logger.dashboards=false"]
    run(compose(logged), output_dir=tmp_path / "summary")
    (table,) = summary_texts(tmp_path / "summary")["model/summary"]
    assert "61,706" in table  # LeNet-5's parameters
    run(compose([*logged, "logger.log_summary=false"]), output_dir=tmp_path / "no_summary")
    assert "model/summary" not in summary_texts(tmp_path / "no_summary")
