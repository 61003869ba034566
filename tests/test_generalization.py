"""Every generalization method changes the effective (resolved) config against baseline in exactly what its
description says, on the default config and on experiment=generalization; baseline is the neutral recipe whatever
the base config; a method without effect, two methods that set one key and a command line that contradicts a
method are errors that say why.

The references are written here: the table of what each method must change, the neutral recipe, and a plain
recursive diff of two resolved configs."""
import functools
import re
import textwrap

import pytest

from cnnrun import ConfigError, compose
from cnnrun.config import CONFIG_DIR, to_plain
from cnnrun.generalization import apply_generalization, method_name
from cnnrun.runfiles import flat_hparams
from tests.conftest import run_cli

BASES = {"default": [], "experiment": ["experiment=generalization"]}
ABSENT = "<absent>"


class Times:
    """The new value is ``factor`` times baseline's."""

    def __init__(self, factor):
        self.factor = factor

    def check(self, old, new):
        return new == pytest.approx(self.factor * old)


class Raises:
    """The method is refused here with this message."""

    def __init__(self, pattern):
        self.pattern = pattern


# What each method must change against baseline: (extra overrides for both, {base: expected}). Expected keys are
# dotted paths into the resolved config (list items as [i], * matches any index); values are the new values, or
# Times(k) of baseline's. DIGITS_RECIPE is data/digits.yaml's augment_recipe.
DIGITS_RECIPE = {"crop": {"padding": 3}, "affine": {"degrees": 10}}
# width and depth are model-level settings: the builder scales every layer by them (tests/model/test_scaling.py)
LENET5_WIDER = {"model.width": 2.0}
EXPECTED = {
    "absolute": ([], {"loss.name": "absolute"}),
    "augment": ([], {"data.augment": DIGITS_RECIPE}),
    "balanced": (["data.imbalance=10"], {"data.balance": "sampler"}),
    "baseline": ([], {}),
    "cutmix": ([], {"regularization.cutmix_alpha": 1.0}),
    "deeper": (["model=dilated"], {"model.depth": 2.0}),
    "dropout": (["model=inception"], {"model.dropout": 0.5, "model.layers[*].dropout.p": 0.5}),
    "early_stopping": ([], {"callbacks.early_stopping.enabled": True, "callbacks.early_stopping.patience": 5}),
    "ema": ([], {"regularization.ema_decay": 0.999}),
    "focal": ([], {"loss.name": "focal", "loss.gamma": 2.0}),
    "l1": ([], {"regularization.l1": 1e-5}),
    "label_smoothing": ([], {"loss.label_smoothing": 0.1}),
    "larger_batch": ([], {"data.batch_size": Times(4), "optim.lr": Times(4)}),
    "less_data": ([], {"data.train_fraction": Times(0.5)}),
    "mixup": ([], {"regularization.mixup_alpha": 0.2}),
    "more_data": ([], {"default": Raises(r"generalization.more_data: no effect here: data.train_fraction is "
                                         r"already 1.0"),
                       "experiment": {"data.train_fraction": Times(2)}}),
    "squared": ([], {"loss.name": "squared"}),
    "weight_decay": ([], {"optim.weight_decay": 5e-4}),
    "wider": ([], LENET5_WIDER),
}
# The neutral recipe: what baseline switches off, whatever the base config switched on.
NEUTRAL = {"data.augment": None, "data.balance": "none", "loss.label_smoothing": 0.0, "optim.weight_decay": 0.0,
           "regularization.l1": 0.0, "regularization.mixup_alpha": 0.0, "regularization.cutmix_alpha": 0.0,
           "regularization.ema_decay": None, "callbacks.early_stopping.enabled": False}


def diff(before, after, path=""):
    """{dotted path: value in ``after``} for every leaf that differs (ABSENT where ``after`` lacks it)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = {}
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            out.update(diff(before.get(key, ABSENT), after.get(key, ABSENT), sub))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = {}
        for i, (b, a) in enumerate(zip(before, after)):
            out.update(diff(b, a, f"{path}[{i}]"))
        return out
    return {} if before == after else {path: after}


def lookup(plain, path):
    node = plain
    for part in path.replace("[", ".[").split("."):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


def effective(overrides, config_dir=None):
    """The resolved config a run of ``overrides`` trains with, without the method names."""
    return _effective(tuple(overrides), config_dir)


@functools.lru_cache(maxsize=None)  # composing takes Hydra a while; tests share their configs, never change them
def _effective(overrides, config_dir):
    plain = to_plain(apply_generalization(compose(overrides, config_dir=config_dir), overrides=[]))
    plain.pop("generalization", None)
    return plain


def matches(path, pattern):
    """``pattern`` is a dotted path whose ``[*]`` stands for any list index."""
    return re.fullmatch(re.escape(pattern).replace(r"\*", r"\d+"), path) is not None


def assert_changes(before, after, expected):
    changed = diff(before, after)
    unexpected = [p for p in changed if not any(matches(p, e) for e in expected)]
    assert not unexpected, f"changed but not described: { {p: changed[p] for p in unexpected} }"
    for pattern, want in expected.items():
        paths = [p for p in changed if matches(p, pattern)]
        assert paths, f"{pattern} did not change"
        for p in paths:
            if isinstance(want, Times):
                assert want.check(lookup(before, p), changed[p]), (p, lookup(before, p), changed[p])
            else:
                assert changed[p] == want, (p, changed[p])


def test_every_method_has_an_expected_change():
    on_disk = {p.stem for p in (CONFIG_DIR / "generalization").glob("*.yaml")}
    assert on_disk == set(EXPECTED), "a method in conf/generalization/ without its row in EXPECTED (or vice versa)"


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_a_method_changes_exactly_what_it_describes(method, base):
    extra, expected = EXPECTED[method]
    if expected and set(expected) <= set(BASES):  # one expectation per base
        expected = expected[base]
    overrides = [*BASES[base], *extra]
    if isinstance(expected, Raises):
        with pytest.raises(ConfigError, match=expected.pattern):
            effective([*overrides, f"generalization={method}"])
        return
    assert_changes(effective([*overrides, "generalization=baseline"]),
                   effective([*overrides, f"generalization={method}"]), expected)


@pytest.mark.parametrize("base", BASES)
def test_baseline_switches_off_what_the_base_recipe_switches_on(base):
    """digits augments, cross-entropy smooths labels by 0.1 and sgd decays weights by 5e-4 in both bases (the
    experiment no longer switches them off itself): baseline changes exactly those to the neutral recipe."""
    as_configured = BASES[base] + (["~generalization"] if base == "experiment" else [])
    assert_changes(effective(as_configured), effective([*BASES[base], "generalization=baseline"]),
                   {k: NEUTRAL[k] for k in ("data.augment", "loss.label_smoothing", "optim.weight_decay")})


@pytest.fixture(scope="module")
def everything_on(tmp_path_factory):
    """A user's config dir whose experiment switches on every knob of the recipe."""
    root = tmp_path_factory.mktemp("user_conf")
    (root / "experiment").mkdir()
    (root / "experiment" / "everything_on.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        data: {imbalance: 4, balance: loss_weights}
        loss: {label_smoothing: 0.2}
        optim: {weight_decay: 1.0e-3}
        regularization: {l1: 1.0e-4, mixup_alpha: 0.4, cutmix_alpha: 0.5, ema_decay: 0.99}
        callbacks: {early_stopping: {enabled: true}}
        """))
    (root / "generalization").mkdir()
    # a method written the old way: it sets a root value instead of declaring it under its own node
    (root / "generalization" / "old_style.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        generalization: {old_style: {description: "L1 at the root"}}
        regularization: {l1: 1.0e-3}
        """))
    return root


def test_baseline_is_the_neutral_recipe_whatever_the_base(everything_on):
    on = effective(["experiment=everything_on"], config_dir=everything_on)
    base = effective(["experiment=everything_on", "generalization=baseline"], config_dir=everything_on)
    assert_changes(on, base, NEUTRAL)
    # and a method on top of it changes only its own knob, which the base had on too
    ema = effective(["experiment=everything_on", "generalization=ema"], config_dir=everything_on)
    assert_changes(base, ema, {"regularization.ema_decay": 0.999})


def test_a_method_that_declares_nothing_is_refused(everything_on):
    with pytest.raises(ConfigError, match=r"generalization.old_style: no effect here: it declares nothing to "
                                          r"change"):
        effective(["generalization=old_style"], config_dir=everything_on)


@pytest.mark.parametrize("overrides, message", [
    (["generalization=dropout", "model=nin"], r"generalization.dropout: no effect here: model.dropout is already 0.5"),
    (["generalization=focal", "loss=focal"],
     r"generalization.focal: no effect here: loss.name is already focal, loss.gamma is already 2.0"),
    (["generalization=augment", "data.augment_recipe=null"],
     r"generalization.augment: no effect here: data.augment is already null"),
    (["generalization=[more_data,less_data]", "data.train_fraction=0.5"],
     r"generalization: no effect here: together, more_data and less_data leave the config as baseline's"),
    (["generalization=[focal,squared]"],
     r"generalization.squared: sets loss.name, which generalization.focal sets too: choose one of them"),
    (["generalization=deeper"], r"generalization.deeper.depth_factor: model 'lenet5' exposes no 'depth'"),
], ids=["dropout_already", "focal_already", "augment_without_recipe", "together_nothing", "two_set_one_key",
        "model_without_depth"])
def test_a_method_without_effect_here_is_an_error_that_says_why(overrides, message):
    with pytest.raises(ConfigError, match=message):
        effective(overrides)


def test_the_command_line_keeps_its_recipe_and_may_not_contradict_a_method():
    # a neutral-recipe knob set on the command line stays: methods compare on the user's own recipe
    cli = ["optim.weight_decay=1e-4"]
    for method in ("baseline", "augment"):
        plain = to_plain(apply_generalization(compose([f"generalization={method}", *cli]), overrides=cli))
        assert plain["optim"]["weight_decay"] == 1e-4 and plain["loss"]["label_smoothing"] == 0.0
    # weight_decay adds nothing to it
    with pytest.raises(ConfigError, match=r"^optim.weight_decay: is set by generalization.weight_decay.*write "
                                          r"generalization.weight_decay.set.optim.weight_decay=1e-4 instead"):
        apply_generalization(compose(["generalization=weight_decay", *cli]), overrides=cli)
    cli = ["model.dropout=0.3"]
    with pytest.raises(ConfigError, match=r"^model.dropout: is set by generalization.dropout.*"
                                          r"generalization.dropout.dropout=0.3 instead"):
        apply_generalization(compose(["generalization=dropout", "model=inception", *cli]), overrides=cli)
    # the method's own node is the place to change its value
    plain = to_plain(apply_generalization(compose(["generalization=ema",
                                                   "generalization.ema.set.regularization.ema_decay=0.99"])))
    assert plain["regularization"]["ema_decay"] == 0.99


def test_the_cli_reads_its_overrides(tmp_path):
    """Under the CLI the command line is Hydra's: a method's key set there is refused before anything runs."""
    result = run_cli(["mode=summary", "generalization=ema", "regularization.ema_decay=0.99"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: regularization.ema_decay: is set by generalization.ema" in result.stderr


def test_method_names():
    assert method_name(compose([])) is None
    assert method_name(compose(["generalization=baseline"])) == "baseline"
    cfg = compose(["generalization=[weight_decay,baseline,augment]"])
    assert method_name(cfg) == "augment+weight_decay"
    assert flat_hparams(to_plain(apply_generalization(cfg)))["method"] == "augment+weight_decay"
    assert "method" not in flat_hparams(to_plain(compose([])))
