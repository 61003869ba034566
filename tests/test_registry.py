"""The Registry class behind every name table: duplicate names, did-you-mean errors that name the requested name,
arguments checked against the builder's signature, import-path targets loaded on first use; and a user's module
named by ``imports:`` registering a layer type, a data source, an augmentation, a loss, an optimizer and a schedule
that one real run then uses."""
import json
import sys
import textwrap

import pytest
import torch

from cnnrun import ConfigError, compose, run
from cnnrun.data import check_data_config
from cnnrun.data.augment import build_augment
from cnnrun.layers.registry import get_layer_type
from cnnrun.registry import Registry
from cnnrun.train.objectives import make_objective
from cnnrun.train.optim import check_schedule, make_optimizer
from cnnrun.trials import make_pruner
from hydra_plugins.cnnrun_optuna_sweeper.optuna_sweeper import make_sampler
from tests.conftest import QUIET

PARAMS = [torch.nn.Parameter(torch.zeros(1))]


def adder(x, *, a, b=2):
    return x + a + b


def scaled(x, *, factor=1.0, **options):
    return x * factor


@pytest.fixture
def widgets():
    reg = Registry("widget", inputs=1)
    reg.register("adder", adder, doc="adds")
    reg.register("scaled", scaled)

    @reg.register("spinner", doc="spins")
    def spinner(x, *, turns):
        if turns < 0:
            raise ConfigError("turns", f"must be >= 0, got {turns}")
        return x * turns

    return reg


def test_a_duplicate_name_is_refused_naming_the_first_registration(widgets):
    with pytest.raises(ValueError, match=r"^widget 'adder' is already registered by tests\.test_registry\.adder$"):
        widgets.register("adder", scaled)
    with pytest.raises(ValueError, match=r"by tests\.test_registry\.widgets\.<locals>\.spinner$"):
        widgets.register("spinner")(adder)
    assert widgets.get("adder").builder is adder  # the first registration stays


def test_unknown_names_say_what_was_asked_for_what_is_close_and_what_exists(widgets):
    with pytest.raises(ConfigError) as err:
        widgets.get("spiner", path="toy.name")
    assert err.value.path == "toy.name"
    assert err.value.message == "unknown widget 'spiner'; did you mean 'spinner'? (known: adder, scaled, spinner)"
    # nothing close: the requested name still appears (not the failed lookup's result), with every known name
    with pytest.raises(ConfigError) as err:
        widgets.get("zzz")
    assert err.value.path is None and err.value.message == "unknown widget 'zzz' (known: adder, scaled, spinner)"
    with pytest.raises(ConfigError, match=r"^unknown widget 'None' \(known: "):
        widgets.get(None)


def test_names_iteration_membership_and_removal(widgets):
    assert widgets.names() == list(widgets) == ["adder", "scaled", "spinner"]
    assert "adder" in widgets and "add" not in widgets and len(widgets) == 3
    del widgets["scaled"]
    assert widgets.names() == ["adder", "spinner"]


def test_arguments_come_from_the_signature_after_the_callers_inputs(widgets):
    entry = widgets.get("adder")
    assert list(entry.arguments) == ["a", "b"] and entry.required == ["a"]
    assert entry.defaults == {"a": None, "b": 2} and entry.doc == "adds"
    assert entry.build(1, {"a": 10}) == 13 and entry.build(1, {"a": 10, "b": 0}) == 11


def test_unknown_and_missing_arguments_are_named(widgets):
    entry = widgets.get("adder")
    with pytest.raises(ConfigError) as err:
        entry.build(1, {"a": 1, "bb": 2}, path="toy")
    assert err.value.path == "toy"
    assert err.value.message == "unknown argument 'bb'; did you mean 'b'? (valid arguments: a, b)"
    with pytest.raises(ConfigError) as err:
        entry.check_arguments({"b": 1}, path="toy")
    assert (err.value.path, err.value.message) == ("toy", "missing required argument 'a'")
    assert widgets.get("scaled").build(2, {"factor": 3, "anything": 1}) == 6  # **options takes any keyword


def test_a_builders_value_error_is_located_under_the_path(widgets):
    with pytest.raises(ConfigError) as err:
        widgets.get("spinner").build(1, {"turns": -1}, path="toy")
    assert (err.value.path, err.value.message) == ("toy.turns", "must be >= 0, got -1")


def test_split_takes_the_settings_the_builder_has_and_names_the_others(widgets):
    taken, left_out = widgets.get("adder").split({"a": 1, "turns": 3, "factor": None})
    assert taken == {"a": 1} and left_out == ["factor", "turns"]


def test_a_builder_without_the_callers_inputs_is_refused_at_registration():
    reg = Registry("layer type", inputs=1, inputs_doc="the input shape")
    with pytest.raises(TypeError, match=r"^layer type 'bad': .*\.<lambda> must take 1 positional argument \(the "
                                        r"input shape\)"):
        reg.register("bad", lambda *, out_channels: None)
    for key in ("builder", "name"):
        with pytest.raises(TypeError, match=f"metadata {key} would hide the entry's own attribute"):
            reg.register("shadow", lambda in_shape: None, **{key: "x"})
    assert "bad" not in reg and "shadow" not in reg and [] not in reg


def test_an_import_path_target_is_imported_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "cnnrun_lazy_target.py").write_text("def make(*, size=1):\n    return ['made'] * size\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cnnrun_lazy_target", raising=False)
    reg = Registry("thing")
    reg.register("lazy", "cnnrun_lazy_target.make")
    reg.register("missing", "cnnrun_lazy_target.nothing")
    assert "cnnrun_lazy_target" not in sys.modules  # registering imports nothing
    assert reg.get("lazy").build({"size": 2}) == ["made", "made"]
    assert "cnnrun_lazy_target" in sys.modules
    assert reg.get("lazy").origin == "cnnrun_lazy_target.make"
    with pytest.raises(ImportError, match="cnnrun_lazy_target has no nothing"):
        reg.get("missing").builder


# -- the project's registries answer with the config key at fault -------------------------------------------------
@pytest.mark.parametrize("call,path,kind,close", [  # a misspelt name
    (lambda: get_layer_type("convv"), None, "layer type", "conv"),
    (lambda: check_data_config({"name": "digitz"}), "data.name", "data set", "digits"),
    (lambda: build_augment({"hfilp": {}}, (1, 8, 8)), "data.augment.hfilp", "augmentation", "hflip"),
    (lambda: make_objective({"name": "focall"}), "loss.name", "objective", "focal"),
    (lambda: make_optimizer(PARAMS, {"name": "adamm", "lr": 0.1}), "optim.name", "optimizer", "adam"),
    (lambda: check_schedule({"name": "cosin"}), "sched.name", "schedule", "cosine"),
    (lambda: make_pruner({"name": "hyperbnd"}), "hydra.sweeper.pruner.name", "pruner", "hyperband"),
    (lambda: make_sampler({"name": "cmaess"}), "hydra.sweeper.sampler.name", "sampler", "cmaes"),
], ids=["layer", "data", "augmentation", "loss", "optimizer", "schedule", "pruner", "sampler"])
def test_every_project_registry_names_the_key_the_kind_and_the_close_name(call, path, kind, close):
    with pytest.raises(Exception) as err:
        call()
    assert getattr(err.value, "path", getattr(err.value, "key", None)) == path  # the sweeper's errors: .key
    assert err.value.message.startswith(f"unknown {kind} '")
    assert f"; did you mean '{close}'" in err.value.message and "(known: " in err.value.message


@pytest.mark.parametrize("call,path,message", [
    (lambda: make_optimizer(PARAMS, {"name": "sgd", "lr": 0.1, "momentun": 0.9}), "optim.momentun",
     "unknown argument 'momentun'; did you mean 'momentum'?"),
    (lambda: check_schedule({"name": "step", "step_sise": 2}), "sched.step_sise",
     "unknown argument 'step_sise'; did you mean 'step_size'? (valid arguments: step_size, gamma)"),
    (lambda: check_schedule({"name": "onecycle", "pct_start": 1.5}), "sched", "onecycle: "),
    (lambda: check_schedule({"name": "cosine", "warmup_epochs": -1}), "sched.warmup_epochs",
     "must be a non-negative number"),
    (lambda: make_objective({"name": "focal", "gamma": -1}), "loss.gamma", "must be a number >= 0"),
    (lambda: make_objective({"name": "squared", "gama": 1}), "loss.gama", "unknown key; did you mean 'gamma'?"),
], ids=["optimizer-argument", "schedule-argument", "onecycle-torch-check", "cosine-value", "focal-value",
        "loss-key"])
def test_optimizer_schedule_and_loss_settings_are_checked_before_training(call, path, message):
    with pytest.raises(ConfigError) as err:
        call()
    assert err.value.path == path and message in err.value.message


# -- a user's module, named by imports:, registers into every registry that a run reads ---------------------------
USER_MODULE = '''
import torch
import torch.nn.functional as F

from cnnrun import register
from cnnrun.data import SOURCES
from cnnrun.data.augment import AUGMENTATIONS, Augmentation
from cnnrun.train.objectives import LOSSES
from cnnrun.train.optim import OPTIMIZERS, SCHEDULES

CALLS = {"layer": 0, "source": 0, "augment": 0, "loss": 0, "optimizer": 0, "schedule": 0}


@register("user_double")
def user_double(in_shape, *, factor=2.0):
    class Double(torch.nn.Module):
        def forward(self, x):
            CALLS["layer"] += 1
            return x * factor
    return Double(), in_shape


@SOURCES.register("user_blobs")
def user_blobs(cfg):
    CALLS["source"] += 1
    y = torch.arange(90) % 3
    x = torch.randn(90, *cfg["input_shape"], generator=torch.Generator().manual_seed(0))
    return x + y.view(-1, 1, 1, 1), y


@AUGMENTATIONS.register("user_count")
class UserCount(Augmentation):
    doc = "counts the batches it sees"

    def __call__(self, x, g):
        CALLS["augment"] += 1
        return x


@LOSSES.register("user_ce")
def user_ce(*, label_smoothing=0.0):
    def loss(logits, y, weight=None):
        CALLS["loss"] += 1
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing)
    return loss


class UserSGD(torch.optim.SGD):
    def step(self, closure=None):
        CALLS["optimizer"] += 1
        return super().step(closure)


OPTIMIZERS.register("user_sgd", UserSGD)


@SCHEDULES.register("user_halved")
def user_halved(optimizer, total_steps, max_epochs, *, factor=0.5):
    CALLS["schedule"] += 1
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor), "interval": "step"}
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The module ``cnnrun_user_plugins`` on the path; its registrations are removed afterwards."""
    from cnnrun.data import SOURCES
    from cnnrun.data.augment import AUGMENTATIONS
    from cnnrun.layers.registry import LAYERS
    from cnnrun.train.objectives import LOSSES
    from cnnrun.train.optim import OPTIMIZERS, SCHEDULES

    (tmp_path / "cnnrun_user_plugins.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "cnnrun_user_plugins"
    sys.modules.pop("cnnrun_user_plugins", None)
    for registry, name in ((LAYERS, "user_double"), (SOURCES, "user_blobs"), (AUGMENTATIONS, "user_count"),
                           (LOSSES, "user_ce"), (OPTIMIZERS, "user_sgd"), (SCHEDULES, "user_halved")):
        if name in registry:
            del registry[name]


def test_a_users_imports_module_registers_into_every_registry_a_run_reads(tmp_path, user_module):
    cfg = compose([*QUIET, "logger=none", "trainer.max_epochs=1",
                   "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                   "data=synthetic", "data.name=user_blobs", "data.input_shape=[1,16,16]", "data.num_classes=3",
                   "data.batch_size=16", "data.augment={user_count: {}}",
                   "model.layers=[{conv: {out_channels: 4, kernel_size: 3}}, {user_double: {factor: 3.0}}, relu, "
                   "global_avgpool, {linear: {out_features: 3}}]",
                   "loss.name=user_ce", "optim.name=user_sgd", "sched=none", "sched.name=user_halved"])
    with pytest.raises(ConfigError, match=r"^data.name: unknown data set 'user_blobs'"):
        run(cfg, output_dir=tmp_path / "without")  # without the import nothing knows these names
    cfg.imports = [user_module]
    run(cfg, output_dir=tmp_path / "with")
    calls = sys.modules[user_module].CALLS
    assert calls["optimizer"] == 2 and calls["augment"] >= 2 and calls["loss"] >= 2  # two training batches
    assert calls["layer"] >= 2 and calls["source"] >= 1 and calls["schedule"] >= 1
    record = json.loads((tmp_path / "with" / "metrics.json").read_text())
    assert record["status"] == "completed" and sum(record["class_counts"]["train"]) < 90
