"""The generalization methods' own parameters (conf/generalization/*.yaml), set to values other than the shipped ones
in the method's node, change the effective config by the rule the README gives: batch size x factor and the
learning rate x factor (linear), x sqrt(factor) or unchanged; width and depth x factor; the training fraction x
factor; dropout and the balancing way as given. The expected values are computed here from the baseline's."""
import math

import pytest

from cnnrun import compose
from cnnrun.config import to_plain
from cnnrun.generalization import apply_generalization


def effective(*overrides):
    return to_plain(apply_generalization(compose(list(overrides)), overrides=[]))


@pytest.mark.parametrize("factor,rule,lr_factor", [(2, "none", 1.0), (9, "sqrt", 3.0), (3, "linear", 3.0)])
def test_larger_batch_factor_and_lr_scaling(factor, rule, lr_factor):
    base = effective("generalization=baseline")
    plain = effective("generalization=larger_batch", f"generalization.larger_batch.batch_size_factor={factor}",
                      f"generalization.larger_batch.lr_scaling={rule}")
    assert plain["data"]["batch_size"] == factor * base["data"]["batch_size"]
    assert plain["optim"]["lr"] == pytest.approx(lr_factor * base["optim"]["lr"])


@pytest.mark.parametrize("method,key,factor,path,base_overrides", [
    ("wider", "width_factor", 1.5, ("model", "width"), []),
    ("deeper", "depth_factor", 3.0, ("model", "depth"), ["model=dilated"]),
    ("less_data", "train_fraction_factor", 0.25, ("data", "train_fraction"), []),
    ("more_data", "train_fraction_factor", 3.0, ("data", "train_fraction"), ["data.train_fraction=0.2"]),
])
def test_factor_methods_multiply_their_key(method, key, factor, path, base_overrides):
    base = effective(*base_overrides, "generalization=baseline")
    plain = effective(*base_overrides, f"generalization={method}", f"generalization.{method}.{key}={factor}")
    before, after = base[path[0]][path[1]], plain[path[0]][path[1]]
    assert after == pytest.approx(min(factor * before, 1.0) if path[1] == "train_fraction" else factor * before)
    assert not math.isclose(after, before)


def test_dropout_sets_the_models_dropout_in_every_dropout_layer():
    plain = effective("model=inception", "generalization=dropout", "generalization.dropout.dropout=0.3")
    assert plain["model"]["dropout"] == 0.3
    probabilities = [layer["dropout"]["p"] for layer in plain["model"]["layers"]
                     if isinstance(layer, dict) and "dropout" in layer]
    assert probabilities and set(probabilities) == {0.3}


@pytest.mark.parametrize("way", ["sampler", "loss_weights"])
def test_balanced_sets_the_chosen_way(way):
    plain = effective("data.imbalance=10", "generalization=balanced", f"generalization.balanced.balance={way}")
    assert plain["data"]["balance"] == way


def test_the_generalization_experiment_sweeps_methods_that_all_differ():
    """experiment=generalization's sweep (hydra.sweeper.params), expanded as Hydra's basic sweeper does: every job
    composes, and the methods' effective configs all differ from each other (seeds aside)."""
    import json

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cnnrun.config import CONFIG_DIR, register_with_hydra
    from cnnrun.generalization import effective_config

    register_with_hydra()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        params = hydra_compose("config", ["experiment=generalization"], return_hydra_config=True).hydra.sweeper.params
    methods, seeds = str(params["generalization"]).split(","), str(params["seed"]).split(",")
    assert "baseline" in methods and len(methods) >= 2 and len(seeds) >= 2
    configs = {}
    for method in methods:
        plain = to_plain(apply_generalization(compose(["experiment=generalization", f"generalization={method}",
                                                       f"seed={seeds[0]}"])))
        configs[method] = json.dumps(effective_config(plain), sort_keys=True, default=str)
    assert len(set(configs.values())) == len(methods), "two methods of the experiment train the same config"
