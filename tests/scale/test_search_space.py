"""The Optuna sweeper's pieces: Hydra's sweep grammar to Optuna distributions and back to overrides, sampler and
pruner settings, the shipped search config."""
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from cnnrun.config import CONFIG_DIR, register_with_hydra
from cnnrun.errors import ConfigError
from cnnrun.trials import make_pruner, pruner_spec
from hydra_plugins.cnnrun_optuna_sweeper._space import SweepConfigError, search_space
from hydra_plugins.cnnrun_optuna_sweeper.optuna_sweeper import make_sampler, resumed_sampler_settings


def test_sweep_grammar_to_optuna_distributions():
    space = search_space({
        "optim.lr": "tag(log, interval(1e-5, 0.5))",
        "optim.momentum": "interval(0.5, 0.99)",
        "model.width": "int(interval(8, 64))",
        "model.depth": "tag(log, int(interval(1, 16)))",
        "data.batch_size": "range(16, 80, 16)",
        "model.activation": "choice(tanh, relu)",
        "seed": 3,
    }, [])
    d = space.distributions
    assert d["optim.lr"] == FloatDistribution(1e-5, 0.5, log=True)
    assert d["optim.momentum"] == FloatDistribution(0.5, 0.99)
    assert d["model.width"] == IntDistribution(8, 64)
    assert d["model.depth"] == IntDistribution(1, 16, log=True)
    # Hydra's range stops before its end, as the basic sweeper's does: 16, 32, 48, 64
    assert d["data.batch_size"] == IntDistribution(16, 64, step=16)
    assert d["model.activation"] == CategoricalDistribution(["tanh", "relu"])
    assert space.fixed == {"seed": "seed=3"}


def test_command_line_sweeps_join_and_fixed_values_win():
    space = search_space({"optim.lr": "interval(0.01, 0.1)", "model.activation": "choice(tanh, relu)"},
                         ["optim.lr=0.05", "optim.weight_decay=tag(log, interval(1e-6, 1e-3))", "+trainer.foo=1"])
    assert set(space.distributions) == {"model.activation", "optim.weight_decay"}
    assert list(space.fixed.values()) == ["optim.lr=0.05", "+trainer.foo=1"]


def test_trial_values_become_overrides_that_hydra_parses_back():
    space = search_space({"a": "choice('x,y', 'p q', 1, 0.5, true, [1,2])", "b": "tag(log, interval(1e-5, 1))",
                          "c": "int(interval(1, 9))"}, ["trainer.max_epochs=2"])
    choices = space.distributions["a"].choices
    assert choices == ("x,y", "p q", 1, 0.5, True, "[1,2]")
    parser = OverridesParser.create()
    for choice, expected in zip(choices, ["x,y", "p q", 1, 0.5, True, [1, 2]]):
        overrides = space.overrides({"a": choice, "b": 1.2345678901234567e-05, "c": 7})
        assert overrides[0] == "trainer.max_epochs=2"
        parsed = {o.key_or_group: o.value() for o in parser.parse_overrides(overrides)}
        assert parsed == {"trainer.max_epochs": 2, "a": expected, "b": 1.2345678901234567e-05, "c": 7}
        assert type(parsed["a"]) is type(expected)  # 1 and True are equal in Python, not as overrides


@pytest.mark.parametrize("value,message", [
    ("glob(*)", "Optuna cannot search this sweep type"),
    ("interval(1, 1)", "needs low < high"),
    ("tag(log, interval(0, 1))", "needs a positive low end"),
    ("choice(a, a)", "repeated values"),
    ("interval(1", "cannot parse"),
])
def test_bad_search_spaces_name_their_key(value, message):
    with pytest.raises(SweepConfigError) as err:
        search_space({"optim.lr": value}, [])
    assert err.value.key == "hydra.sweeper.params.optim.lr" and message in err.value.message
    assert str(err.value).startswith("error: hydra.sweeper.params.optim.lr: ")


def test_pruner_settings():
    from optuna.pruners import HyperbandPruner, MedianPruner, NopPruner

    median = make_pruner({"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    assert isinstance(median, MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (1, 0)
    assert isinstance(make_pruner({"name": "hyperband", "min_resource": 1, "reduction_factor": 3}), HyperbandPruner)
    assert isinstance(make_pruner(None), NopPruner) and isinstance(make_pruner({"name": "none"}), NopPruner)
    with pytest.raises(ConfigError, match="unknown pruner 'medain'; did you mean 'median'") as err:
        make_pruner({"name": "medain"})
    assert err.value.path == "hydra.sweeper.pruner.name"
    with pytest.raises(ConfigError, match="unknown argument 'n_warmup_step'; did you mean 'n_warmup_steps'") as err:
        make_pruner({"name": "median", "n_warmup_step": 2})
    assert err.value.path == "hydra.sweeper.pruner"
    with pytest.raises(ConfigError, match="MedianPruner: .*n_startup_trials"):
        make_pruner({"name": "median", "n_startup_trials": -1})


def test_switching_pruners_leaves_out_the_other_pruners_settings():
    settings = {"name": "hyperband", "n_startup_trials": 5, "n_warmup_steps": 2, "min_resource": 1,
                "reduction_factor": None}
    assert pruner_spec(settings) == ({"name": "hyperband", "min_resource": 1}, ["n_startup_trials", "n_warmup_steps"])
    assert pruner_spec({**settings, "name": "median"}) == (
        {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2}, ["min_resource"])


def test_sampler_settings():
    from optuna.samplers import RandomSampler, TPESampler

    tpe = make_sampler({"name": "tpe", "seed": 1, "n_startup_trials": 3, "constant_liar": None,
                        "args": {"n_ei_candidates": 7}})
    assert isinstance(tpe, TPESampler) and (tpe._n_startup_trials, tpe._n_ei_candidates) == (3, 7)
    assert isinstance(make_sampler({"name": "random", "seed": None, "n_startup_trials": 3}), RandomSampler)
    with pytest.raises(SweepConfigError, match="unknown sampler 'tpee'; did you mean 'tpe'"):
        make_sampler({"name": "tpee"})
    with pytest.raises(SweepConfigError, match="unknown argument 'n_startup_trials'.*valid arguments: seed") as err:
        make_sampler({"name": "random", "args": {"n_startup_trials": 3}})
    assert err.value.key == "hydra.sweeper.sampler.args"


def test_a_resumed_seeded_study_proposes_new_points_the_same_ones_every_time():
    """A seeded sampler built again for a study that has trials would draw its first random proposals again; with the
    resumed settings it goes on with other points, and two resumes of the same study propose the same ones."""
    import optuna
    from optuna.distributions import FloatDistribution

    space = {"x": FloatDistribution(0.0, 1.0)}
    settings = {"name": "tpe", "seed": 3, "n_startup_trials": 10}

    def ask(study, n):
        values = []
        for _ in range(n):
            trial = study.ask(space)
            study.tell(trial, trial.params["x"])
            values.append(trial.params["x"])
        return values

    def begin_and_resume():
        study = optuna.create_study(sampler=make_sampler(settings))
        first = ask(study, 3)
        study.sampler = make_sampler(resumed_sampler_settings(settings, len(study.trials)))
        return first, ask(study, 3)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first, then = begin_and_resume()
    again = optuna.create_study(sampler=make_sampler(settings))
    assert ask(again, 3) == first  # the premise: the same seed draws the same first points
    assert not set(first) & set(then)
    assert begin_and_resume() == (first, then)
    assert resumed_sampler_settings(settings, 0) == settings
    assert resumed_sampler_settings({**settings, "seed": None}, 5)["seed"] is None


def test_shipped_search_config_searches_keys_that_exist():
    register_with_hydra()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hparams_search=lenet5_digits"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("CnnrunOptunaSweeper")
    assert sweeper.direction == "maximize" and sweeper.pruner.name == "median"
    assert pruner_spec(OmegaConf.to_container(sweeper.pruner))[1] == []  # every pruner setting is used
    make_sampler(OmegaConf.to_container(sweeper.sampler))
    space = search_space(OmegaConf.to_container(sweeper.params), [])
    assert len(space.distributions) >= 4
    for key in space.distributions:  # a typo in the search space would silently add a key nobody reads
        assert OmegaConf.select(cfg, key) is not None, key
    for values in sweeper.enqueue:  # the enqueued defaults are what the configs say
        for key, value in values.items():
            assert OmegaConf.select(cfg, key) == value, key


def test_a_users_imports_module_registers_a_sampler_and_a_pruner(tmp_path, monkeypatch):
    """The sweeper imports the config's ``imports:`` modules before it builds its sampler and pruner."""
    import sys

    from cnnrun.trials import PRUNERS
    from hydra_plugins.cnnrun_optuna_sweeper.optuna_sweeper import SAMPLERS, CnnrunOptunaSweeper

    (tmp_path / "cnnrun_user_search.py").write_text(
        "import optuna\n"
        "from cnnrun.trials import PRUNERS\n"
        "from hydra_plugins.cnnrun_optuna_sweeper.optuna_sweeper import SAMPLERS\n"
        "class EveryOther(optuna.samplers.RandomSampler):\n    pass\n"
        "SAMPLERS.register('every_other', EveryOther)\n"
        "class AboveFloor(optuna.pruners.ThresholdPruner):\n    pass\n"
        "PRUNERS.register('above_floor', AboveFloor)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sweeper = CnnrunOptunaSweeper("maximize", None, None, 1, 1, {}, {}, {}, [])
    sweeper.config = OmegaConf.create({"imports": ["cnnrun_user_search"]})
    try:
        with pytest.raises(SweepConfigError, match="unknown sampler 'every_other'"):
            make_sampler({"name": "every_other"})
        sweeper._import_user_modules()
        sampler = make_sampler({"name": "every_other", "seed": 3})
        assert type(sampler).__name__ == "EveryOther"
        pruner = make_pruner({"name": "above_floor", "lower": 0.2})
        assert type(pruner).__name__ == "AboveFloor" and pruner._lower == 0.2
    finally:
        sys.modules.pop("cnnrun_user_search", None)
        for registry, name in ((SAMPLERS, "every_other"), (PRUNERS, "above_floor")):
            if name in registry:
                del registry[name]
