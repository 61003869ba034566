"""The root keys in real runs, against references written here: mode=summary describes the model without loading
data or training; mode=test evaluates a checkpoint (its metrics are a plain forward pass over the test split) and
trains nothing; seed fixes the initial weights (torch.manual_seed(seed), then the model, as a user would build it)
and the sample order; imports registers the user's layer types before the model is built; the job stays in the folder
the command ran in (hydra.job.chdir: false) and run folders are named by the time and a random id;
regularization.mixup_alpha and cutmix_alpha mix training batches as Zhang et al. (2018) and Yun et al. (2019) define
it."""
import contextlib
import json

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import kstest

from cnnrun import build_model, compose, run
from cnnrun.config import to_plain
from cnnrun.data import load_data
from cnnrun.model.builder import CnnModel
from cnnrun.train import module as module_mod
from tests.conftest import QUIET, run_cli
from tests.train.test_schedules import optimizer_steps

TINY = [*QUIET, "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "data.train_fraction=0.2"]


def record_of(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_summary_mode_builds_and_describes_the_model_without_data_or_training(tmp_path):
    """mode=summary with a data set whose files are absent: the model is built from data.input_shape alone."""
    out = tmp_path / "run"
    metrics = run(compose(["mode=summary", "data=mnist", f"data.root={tmp_path / 'no-data'}"]), output_dir=out)
    record = record_of(out)
    assert metrics == {} and record["status"] == "completed" and record["metrics"] == {}
    assert "data_sizes" not in record and not (out / "checkpoints").exists() and not (out / "tensorboard").exists()
    summary = json.loads((out / "summary.json").read_text())
    # LeNet-5 on 1x28x28: C1 (5*5*1 + 1) * 6, C3 (5*5*6 + 1) * 16, then 16 maps of 4x4 into 120, 84 and 10 units
    assert summary["input_shape"] == [1, 28, 28]
    assert summary["total_params"] == 156 + 2416 + (16 * 4 * 4 + 1) * 120 + (120 + 1) * 84 + (84 + 1) * 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    run(compose(TINY), output_dir=out)
    return out


def plain_test_metrics(ckpt_path):
    """(test/loss, test/acc) of a checkpoint: its weights, the test split standardised with the training split's
    mean and standard deviation, one forward pass."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    cfg = ckpt["hyper_parameters"]["config"]
    data = load_data({**cfg["data"], "normalize": False})
    model = build_model(cfg["model"], cfg["data"]["input_shape"], cfg["data"]["num_classes"])
    model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
    mean, std = data.train_x.double().mean(), data.train_x.double().std()
    with torch.no_grad():
        logits = model.eval()(((data.test_x.double() - mean) / std).float())
    return float(F.cross_entropy(logits, data.test_y)), float((logits.argmax(1) == data.test_y).float().mean())


def test_test_mode_evaluates_the_checkpoint_and_trains_nothing(trained, tmp_path):
    ckpt = trained / "checkpoints" / "best.ckpt"
    metrics = run(compose([*TINY, "trainer.limit_test_batches=null", "mode=test", f"ckpt_path={ckpt}",
                           "trainer.max_epochs=3"]), output_dir=tmp_path)
    record = record_of(tmp_path)
    assert record["status"] == "completed" and record["epochs"] == 0 and record["history"] == []
    assert not (tmp_path / "checkpoints").exists()
    loss, acc = plain_test_metrics(ckpt)
    assert metrics["test/acc"] == pytest.approx(acc, abs=1e-6) and metrics["test/loss"] == pytest.approx(loss, rel=1e-5)


def test_test_mode_standardises_with_the_checkpoints_own_statistics(trained, tmp_path):
    """README: ``python -m cnnrun mode=test ckpt_path=<run>/checkpoints/best.ckpt``, without the training run's other
    overrides. The checkpoint's model was trained on inputs standardised with its own training split's statistics
    (saved in its config, data.stats); the test must use them, not those of the data config of the test command
    (here the whole training split, where the run trained on data.train_fraction=0.2)."""
    ckpt = trained / "checkpoints" / "best.ckpt"
    metrics = run(compose([*QUIET, "logger=none", "mode=test", f"ckpt_path={ckpt}"]), output_dir=tmp_path)
    loss, acc = plain_test_metrics(ckpt)
    assert metrics["test/acc"] == pytest.approx(acc, abs=1e-6) and metrics["test/loss"] == pytest.approx(loss, rel=1e-5)


def first_step(tmp_path, seed):
    """(the weights the first optimizer step starts from, the labels of its batch) of a short run with ``seed``."""
    labels = []
    original = module_mod.Classifier.training_step

    def spy(self, batch, batch_idx):
        labels.append(batch[1].clone())
        return original(self, batch, batch_idx)

    with pytest.MonkeyPatch.context() as patch, optimizer_steps() as steps:
        patch.setattr(module_mod.Classifier, "training_step", spy)
        run(compose([*TINY, f"seed={seed}", "trainer.limit_train_batches=1"]), output_dir=tmp_path / str(seed))
    return steps[0]["before"], labels[0]


def test_seed_fixes_the_initial_weights_and_the_sample_order(tmp_path):
    cfg = to_plain(compose(TINY))
    data = cfg["data"]
    seen = {seed: first_step(tmp_path, seed) for seed in (3, 4)}
    for seed, (weights, _) in seen.items():
        torch.manual_seed(seed)  # as a user builds the model after seeding
        reference = build_model(cfg["model"], data["input_shape"], data["num_classes"])
        for ours, theirs in zip(weights, reference.parameters(), strict=True):
            assert torch.equal(ours, theirs.detach()), seed
    assert not torch.equal(seen[3][0][0], seen[4][0][0])
    assert not torch.equal(seen[3][1], seen[4][1])  # another first batch


def test_imports_registers_the_users_layer_types_before_the_model_is_built(tmp_path, monkeypatch):
    (tmp_path / "user_layers_for_imports.py").write_text(
        "from torch import nn\n"
        "from cnnrun import register\n\n"
        "@register('halver', doc='x / 2')\n"
        "def halver(in_shape):\n"
        "    class Halver(nn.Module):\n"
        "        def forward(self, x):\n"
        "            return x / 2\n"
        "    return Halver(), in_shape\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from cnnrun.layers.registry import LAYERS

    cfg = compose(["mode=summary", "imports=[user_layers_for_imports]"])
    cfg.model.layers.insert(0, "halver")
    try:
        run(cfg, output_dir=tmp_path / "run")
    finally:
        with contextlib.suppress(KeyError):  # registered by the import above, unless that failed
            del LAYERS["halver"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["layers"][0]["type"] == "halver" and summary["total_params"] == 61_706


def test_relative_paths_are_read_from_where_the_command_runs(tmp_path):
    """conf/hydra/default.yaml's job.chdir: false: a job stays in the folder the command ran in, so a relative
    data.root is the user's folder (read when the config is resolved, inside the job)."""
    from tests.data.fakes import write_png_folder

    write_png_folder(tmp_path / "images", {"a": 1, "b": 1, "c": 1}, size=(16, 16), mode="L")
    proc = run_cli(["mode=summary", "data=image_folder", "data.root=images", "data.image_size=16"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["input_shape"] == [1, 16, 16] and summary["output_shape"] == [3]  # the folder's 3 grey classes


def test_run_and_sweep_folders_are_named_by_the_time_and_a_random_id():
    """conf/hydra/default.yaml: outputs/runs/<date>_<time>_<id>_<model>-<data> and outputs/sweeps/<date>_<time>_<id>, where the id
    (4 hex digits, drawn once per process) keeps two runs started in the same second apart."""
    import re

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cnnrun.config import CONFIG_DIR, register_with_hydra

    register_with_hydra()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        hydra = hydra_compose(config_name="config", return_hydra_config=True).hydra
    GlobalHydra.instance().clear()
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{4}"
    assert re.fullmatch(rf"outputs/runs/{stamp}_lenet5-digits", hydra.run.dir), hydra.run.dir
    assert re.fullmatch(rf"outputs/sweeps/{stamp}", hydra.sweep.dir), hydra.sweep.dir


# -- mixup and cutmix ----------------------------------------------------------------------------------------------
# Random patterns (no two pixels alike, unlike digits' blank background): a pasted box shows exactly where it is.
MIXING = [*QUIET, "logger=none", "data=synthetic", "data.num_samples=2048", "data.batch_size=16",
          "trainer.max_epochs=1", "trainer.limit_train_batches=60", "trainer.limit_val_batches=1",
          "trainer.limit_test_batches=1"]


def mixing_run(tmp_path, *overrides):
    """For every training step: the loader's batch (x, y), the model's input and the objective's target."""
    steps = []
    original_step, original_forward, make = (module_mod.Classifier.training_step, CnnModel.forward,
                                             module_mod.make_objective)

    def step(self, batch, batch_idx):
        steps.append({"x": batch[0].clone(), "y": batch[1].clone()})
        return original_step(self, batch, batch_idx)

    def forward(self, x):
        if self.training:
            steps[-1]["input"] = x.detach().clone()
        return original_forward(self, x)

    def spying(cfg):
        objective = make(cfg)

        def loss(logits, target, weight=None):
            steps[-1]["target"] = target.detach().clone()
            return objective(logits, target, weight)
        return loss

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module_mod.Classifier, "training_step", step)
        patch.setattr(CnnModel, "forward", forward)
        patch.setattr(module_mod, "make_objective", spying)
        run(compose([*MIXING, *overrides]), output_dir=tmp_path)
    assert len(steps) == 60
    return steps


def one_hot(y):
    return F.one_hot(y, 10).double()


def as_mixup(step):
    """lambda if the step's input is lambda x + (1 - lambda) x[perm] for one lambda and a pairing of the batch's
    samples, and its target lambda y + (1 - lambda) y[perm] (the same pairs); None otherwise."""
    x, z = step["x"].flatten(1).double(), step["input"].flatten(1).double()
    lams, partners, moved = [], [], []
    for i in range(len(x)):
        d, a = x[i] - x, z[i] - x  # the segment from each candidate partner x[j] to x[i]
        lam = (a * d).sum(1) / (d * d).sum(1).clamp_min(1e-12)
        residual = (a - lam[:, None] * d).norm(dim=1) / d.norm(dim=1).clamp_min(1e-12)
        residual[i] = float("inf")
        j = int(residual.argmin())
        if residual[j] > 1e-4:
            return None
        # a sample paired with itself, or lambda within float precision of 1, is left as it was
        moved.append(bool((z[i] - x[i]).norm() > 1e-5 * x[i].norm()))
        lams.append(float(lam[j]))
        partners.append(j if moved[-1] else i)
    found = [lam for lam, m in zip(lams, moved) if m] or lams
    if max(found) - min(found) > 1e-4:
        return None
    lam = found[0]
    y = one_hot(step["y"])
    assert torch.allclose(step["target"].double(), lam * y + (1 - lam) * y[partners], atol=1e-5)
    return lam


def as_cutmix(step):
    """The pasted fraction if the step's input is each sample with one box (the same for the batch) pasted from
    another sample, and its target (1 - fraction) y + fraction y[partner]; None otherwise."""
    x, z = step["x"], step["input"]
    changed = (z != x).flatten(2).any(1).view(len(x), *x.shape[2:])  # (N, H, W)
    if not changed.any():
        return None
    rows, cols = changed.any(0).any(1).nonzero().flatten(), changed.any(0).any(0).nonzero().flatten()
    box = (slice(None), slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    outside = torch.ones_like(changed[0])
    outside[box[1:]] = False
    if not torch.equal(z[:, :, outside], x[:, :, outside]):
        return None
    fraction = (box[1].stop - box[1].start) * (box[2].stop - box[2].start) / changed[0].numel()
    y = one_hot(step["y"])
    for i in range(len(x)):
        partners = [j for j in range(len(x)) if torch.equal(z[i][box], x[j][box])]
        if not partners:
            return None
        expected = [(1 - fraction) * y[i] + fraction * y[j] for j in partners]
        assert any(torch.allclose(step["target"][i].double(), e, atol=1e-6) for e in expected), i
    return fraction


def test_mixup_mixes_every_batch_with_lambda_from_beta_alpha(tmp_path):
    alpha = 0.3
    lams = [as_mixup(step) for step in mixing_run(tmp_path, f"regularization.mixup_alpha={alpha}")]
    assert None not in lams
    assert kstest(lams, "beta", args=(alpha, alpha)).pvalue > 0.01
    assert kstest(lams, "beta", args=(1.0, 1.0)).pvalue < 0.01  # the test tells alpha apart


def test_cutmix_pastes_one_box_per_batch_and_mixes_the_labels_by_its_area(tmp_path):
    fractions = [as_cutmix(step) for step in mixing_run(tmp_path, "regularization.cutmix_alpha=1.0")]
    assert None not in fractions and len(set(fractions)) > 10


def test_with_both_each_batch_gets_one_of_them(tmp_path):
    steps = mixing_run(tmp_path, "regularization.mixup_alpha=1.0", "regularization.cutmix_alpha=1.0")
    kinds = ["cutmix" if as_cutmix(s) is not None else "mixup" if as_mixup(s) is not None else None for s in steps]
    assert None not in kinds
    assert 15 <= kinds.count("cutmix") <= 45  # each with probability 1/2: 60 batches


def test_cutmix_draws_its_box_fraction_from_beta_of_its_alpha(tmp_path, monkeypatch):
    """The value of cutmix_alpha: every batch's mixing fraction is drawn from Beta(alpha, alpha) (CutMix's lambda, of
    which the box then takes 1 - lambda, rounded to whole pixels)."""
    drawn = []

    class RecordingBeta(torch.distributions.Beta):
        def __init__(self, a, b, *args, **kwargs):
            drawn.append((float(a), float(b)))
            super().__init__(a, b, *args, **kwargs)

    monkeypatch.setattr(torch.distributions, "Beta", RecordingBeta)
    steps = mixing_run(tmp_path, "regularization.cutmix_alpha=0.3")
    assert len(drawn) == len(steps) > 0 and set(drawn) == {(0.3, 0.3)}
