"""The debug/ config group (lightning-hydra-template's presets): what each one makes the run do."""
import json

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from cnnrun import compose, run
from tests.conftest import QUIET


def run_counting_steps(tmp_path, *overrides):
    """Run in-process; return the metrics record, the number of optimizer steps and the training inputs seen."""
    steps, inputs = [], []

    def record_input(module, args):
        if module.training and torch.is_grad_enabled() and type(module).__name__ == "CnnModel":
            inputs.append(args[0].detach().clone())

    handles = [register_optimizer_step_pre_hook(lambda opt, a, k: steps.append(1)),
               torch.nn.modules.module.register_module_forward_pre_hook(record_input)]
    try:
        run(compose([*QUIET, "logger=none", *overrides]), output_dir=tmp_path)
    finally:
        for handle in handles:
            handle.remove()
    return json.loads((tmp_path / "metrics.json").read_text()), len(steps), inputs


def test_fdr_runs_one_batch_of_each_stage(tmp_path):
    record, steps, _ = run_counting_steps(tmp_path, "debug=fdr")
    assert record["status"] == "completed" and steps == 1
    assert "test/acc" in record["metrics"]


def test_limit_runs_three_short_epochs(tmp_path):
    record, steps, _ = run_counting_steps(tmp_path, "debug=limit")
    assert record["epochs"] == 3 and steps == 3 * 4


def test_overfit_trains_on_the_same_first_batches_every_epoch(tmp_path):
    from cnnrun.config import to_plain
    from cnnrun.data import load_data

    record, steps, inputs = run_counting_steps(tmp_path, "debug=overfit", "trainer.max_epochs=3")
    assert steps == 3 * 2 and len(inputs) == 6
    for epoch in (1, 2):  # the same two batches, in the same order, unaugmented
        assert torch.equal(inputs[2 * epoch], inputs[0]) and torch.equal(inputs[2 * epoch + 1], inputs[1])
    plain = to_plain(compose(["debug=overfit"]))
    assert plain["data"]["augment"] is None and plain["loss"]["label_smoothing"] == 0
    splits = load_data(plain["data"])
    first = splits.train_x[:plain["data"]["batch_size"]].float()  # the training split's first batch, in order
    standardised = (first - first.mean()) / first.std()
    got = (inputs[0] - inputs[0].mean()) / inputs[0].std()
    assert torch.allclose(got, standardised.reshape(got.shape), atol=1e-4)


def test_overfit_reaches_full_training_accuracy(tmp_path):
    record, _, _ = run_counting_steps(tmp_path, "debug=overfit", "trainer.max_epochs=40")
    assert record["metrics"]["train/acc"] == 1.0


def test_profiler_writes_its_report_into_the_run_folder(tmp_path):
    record, steps, _ = run_counting_steps(tmp_path, "debug=profiler", "trainer.limit_train_batches=3")
    assert record["epochs"] == 1 and steps == 3
    report = (tmp_path / "fit-profile.txt").read_text()
    assert "run_training_epoch" in report and "run_training_batch" in report
