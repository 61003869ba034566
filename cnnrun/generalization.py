"""Generalization methods (the chapter's 5.17 table): configs in ``conf/generalization/`` that compose.

No method is chosen by default: a run trains with the recipe its configs give (digits augments, cross-entropy
smooths labels, sgd decays weights). As soon as methods are chosen (``generalization=baseline``, ``augment``,
``[augment,l1]``), the run starts from the NEUTRAL recipe (:data:`NEUTRAL_RECIPE`: every training-recipe knob that
some method controls, switched off) and the chosen methods are applied on top, in the order given. So ``baseline``
means "no method" whatever the base config, and a comparison of methods never compares a configuration with itself.
The model (width, depth, dropout) and the amount of data are not neutralised: they are the model and data as
configured.

Each method records itself under ``generalization.<name>`` and declares there what it does:

- ``description``: the one line the comparison report prints;
- ``set``: values merged into the config, written as nested mappings (``set: {optim: {weight_decay: 5.0e-4}}``) so
  that the command line can change them (``generalization.weight_decay.set.optim.weight_decay=1e-4``);
- parameters of the appliers below, which scale a value the run already has (``width_factor``,
  ``train_fraction_factor`` ...) or check that the method applies (``dropout``, ``balance``). They act on the
  composed config before it is resolved, so that interpolations such as ``${model.width}`` see the new value.
  Appliers live in :data:`APPLIERS` (``@APPLIERS.register("lr_factor", changes=("optim.lr",))`` adds one).

Precedence, lowest first: the config files, the neutral recipe, the methods, the command line. A neutral-recipe key
set on the command line keeps its value (compare methods on your own recipe: ``optim.weight_decay=1e-4``); a key that
a chosen method sets cannot also be set on the command line (change the method's value instead). Every chosen method
must change the effective (resolved) config, or the run stops with an error that says why it has no effect here.
Light module: OmegaConf only.
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from cnnrun.config import command_line, to_plain
from cnnrun.errors import ConfigError, did_you_mean
from cnnrun.registry import Registry

# What the run starts from when methods are chosen: each knob some method switches on, switched off. A knob that a
# config lacks stays absent (absent means off wherever it is read).
NEUTRAL_RECIPE: dict[str, Any] = {
    "data.augment": None,
    "data.balance": "none",
    "loss.label_smoothing": 0.0,
    "optim.weight_decay": 0.0,
    "regularization.l1": 0.0,
    "regularization.mixup_alpha": 0.0,
    "regularization.cutmix_alpha": 0.0,
    "regularization.ema_decay": None,
    "callbacks.early_stopping.enabled": False,
}
# Keys of a job's config that do not change what it trains (left out when two configs are compared).
RUN_SPECIFIC_KEYS = ("seed", "ckpt_path", "hydra", "generalization", "data.stats")


# -- appliers: method parameters that act on the values the run already has ---------------------------------------
# name -> apply(config, value, the method's parameters, its key), registered with ``changes`` (the keys it changes,
# named when it has no effect) and ``assigns`` (it sets its keys whatever their value, so the command line cannot
# set them too)
APPLIERS = Registry("generalization parameter", inputs=4,
                    inputs_doc="the config, the value, the method's parameters and its key")


def _number(value, key: str, *, positive: bool = True) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or \
            (positive and value <= 0):
        raise ConfigError(key, f"must be a positive number, got {value!r}")
    return float(value)


def _model_key(cfg: DictConfig, key: str, where: str) -> Any:
    model = cfg.get("model")
    if model is None or key not in model:
        name = model.get("name", "?") if model is not None else "?"
        raise ConfigError(where, f"model '{name}' exposes no '{key}' hyperparameter (model.{key}); choose a model "
                                 f"that has one")
    return model[key]


@APPLIERS.register("train_fraction_factor", changes=("data.train_fraction",))
def _train_fraction(cfg: DictConfig, factor, params: dict, where: str) -> None:
    f = _number(factor, where)
    cfg.data.train_fraction = min(1.0, float(cfg.data.train_fraction) * f)


# batch_size_factor's learning-rate rules: what the factor does to the learning rate (none: leaves it as it is)
LR_RULES = {"linear": lambda f: f, "sqrt": math.sqrt, "none": None}


@APPLIERS.register("batch_size_factor", changes=("data.batch_size", "optim.lr"))
def _batch_size(cfg: DictConfig, factor, params: dict, where: str) -> None:
    """Batch size x factor, and the learning rate with it by the method's ``lr_scaling`` rule (linear by default)."""
    f = _number(factor, where)
    cfg.data.batch_size = max(1, int(round(cfg.data.batch_size * f)))
    rule = params.get("lr_scaling", "linear")
    _lr_scaling(cfg, rule, params, f"{where.rpartition('.')[0]}.lr_scaling")
    if LR_RULES[rule] is not None:
        cfg.optim.lr = float(cfg.optim.lr) * LR_RULES[rule](f)


@APPLIERS.register("lr_scaling", changes=())
def _lr_scaling(cfg: DictConfig, rule, params: dict, where: str) -> None:
    """The learning-rate rule that goes with a batch-size factor (applied with it, by ``_batch_size``)."""
    if not isinstance(rule, str) or rule not in LR_RULES:
        raise ConfigError(where, f"must be one of {', '.join(LR_RULES)}, got {rule!r}")


@APPLIERS.register("width_factor", changes=("model.width",))
def _width(cfg: DictConfig, factor, params: dict, where: str) -> None:
    f = _number(factor, where)
    cfg.model.width = float(_number(_model_key(cfg, "width", where), "model.width")) * f


@APPLIERS.register("depth_factor", changes=("model.depth",))
def _depth(cfg: DictConfig, factor, params: dict, where: str) -> None:
    f = _number(factor, where)
    depth = _model_key(cfg, "depth", where)
    scaled = _number(depth, "model.depth") * f
    cfg.model.depth = max(1, int(round(scaled))) if isinstance(depth, int) else scaled


@APPLIERS.register("dropout", changes=("model.dropout",), assigns=True)
def _dropout(cfg: DictConfig, p, params: dict, where: str) -> None:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
        raise ConfigError(where, f"must be a probability in [0, 1), got {p!r}")
    _model_key(cfg, "dropout", where)
    cfg.model.dropout = float(p)


@APPLIERS.register("balance", changes=("data.balance",), assigns=True)
def _balance(cfg: DictConfig, how, params: dict, where: str) -> None:
    ways = ("sampler", "loss_weights")
    if how not in ways:
        raise ConfigError(where, f"must be one of {', '.join(ways)}, got {how!r}")
    imbalance = cfg.data.imbalance
    if not isinstance(imbalance, (int, float)) or imbalance <= 1:
        raise ConfigError(where, f"adjusts the class distribution of an imbalanced training set, but "
                                 f"data.imbalance is {imbalance!r}: set data.imbalance > 1 (for example 10) for the "
                                 f"whole comparison")
    with open_dict(cfg.data):
        cfg.data.balance = how


def _parameters() -> tuple[str, ...]:
    """The keys a method may have: its description, its ``set`` mapping and the appliers' parameters."""
    return ("description", "set", *APPLIERS)


def _changes(parameter: str) -> tuple[str, ...]:
    """The keys that the applier of ``parameter`` changes (none when it is no applier's)."""
    return APPLIERS.get(parameter).metadata.get("changes", ()) if parameter in APPLIERS else ()


def _applier_keys(params: dict, assigning: bool) -> list[str]:
    """The keys that the method's appliers change: those of the appliers that assign their keys (or of the
    others)."""
    return [key for p in params if p in APPLIERS and APPLIERS.get(p).metadata.get("assigns", False) == assigning
            for key in _changes(p)]


# -- the chosen methods -------------------------------------------------------------------------------------------
def methods(cfg: DictConfig | dict) -> dict[str, Any]:
    """The chosen methods in the order they apply: name -> its node (unresolved), ``{}`` when none is chosen."""
    node = cfg.get("generalization") if cfg is not None else None
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else dict(node)


def method_name(cfg: DictConfig | dict) -> str | None:
    """The composed methods joined by '+', sorted (``augment+weight_decay``); ``baseline`` when only it is chosen;
    None when no method is chosen (the run trains with its configs' own recipe)."""
    chosen = methods(cfg)
    if not chosen:
        return None
    return "+".join(sorted(k for k in chosen if k != "baseline")) or "baseline"


def apply_generalization(cfg: DictConfig, overrides: Sequence[str] | None = None) -> DictConfig:
    """The config the chosen methods make of ``cfg``: a copy, from the neutral recipe with the methods on top.

    ``overrides`` are the command line's (``key=value``; by default :func:`cnnrun.config.command_line`'s): their
    keys keep their values against the neutral recipe, and may not be keys a chosen method sets. Raises
    :class:`ConfigError` naming the key for a malformed method, a conflict, or a method without effect here.
    """
    chosen = methods(cfg)
    if not chosen:
        return cfg
    _check_parameters(chosen)
    _check_conflicts(chosen)
    user_keys = _command_line_keys(command_line(cfg) if overrides is None else overrides)
    _check_command_line(chosen, user_keys)
    effective = _with_methods(cfg, chosen, list(chosen), user_keys)
    _check_effects(cfg, chosen, effective, user_keys)
    return effective


def _check_parameters(chosen: dict[str, Any]) -> None:
    known = _parameters()
    for name, params in chosen.items():
        if not isinstance(params, dict):
            raise ConfigError(f"generalization.{name}", f"must be a mapping with a description, got {params!r}")
        for key in params:
            if key not in known:
                raise ConfigError(f"generalization.{name}.{key}",
                                  f"unknown parameter{did_you_mean(key, known)} (known: {', '.join(known)})")
        if not isinstance(params.get("set", {}), dict):
            raise ConfigError(f"generalization.{name}.set", f"must be a mapping of the values the method sets, "
                                                            f"got {params['set']!r}")


def _set_keys(params: dict) -> list[str]:
    """The dotted keys a method assigns: the leaves of its ``set`` and the keys of its assigning appliers."""
    def leaves(prefix: str, node: Any) -> list[str]:
        if isinstance(node, dict) and node:
            return [key for k, v in node.items() for key in leaves(f"{prefix}{k}.", v)]
        return [prefix[:-1]]

    keys = leaves("", params["set"]) if params.get("set") else []
    return keys + _applier_keys(params, assigning=True)


def _within(key: str, other: str) -> bool:
    """``key`` is ``other`` or lies below it (``data.augment.crop`` within ``data.augment``)."""
    return key == other or key.startswith(other + ".")


def _check_conflicts(chosen: dict[str, Any]) -> None:
    """Two methods that set the same key would leave only the last one's value: one of them would do nothing."""
    owner: dict[str, str] = {}
    for name, params in chosen.items():
        for key in _set_keys(params):
            first = next((o for k, o in owner.items() if _within(key, k) or _within(k, key)), None)
            if first is not None:
                raise ConfigError(f"generalization.{name}", f"sets {key}, which generalization.{first} sets too: "
                                                            f"choose one of them")
            owner[key] = name


def _command_line_keys(overrides: Sequence[str]) -> dict[str, str]:
    """key -> value text of the command line's value overrides (group choices such as ``optim=adamw`` are not keys
    of values, deletions set nothing)."""
    out: dict[str, str] = {}
    for override in overrides:
        key, eq, value = override.partition("=")
        key = key.lstrip("+")
        if eq and "." in key and not key.startswith("~") and "@" not in key and "/" not in key:
            out[key] = value
    return out


def _check_command_line(chosen: dict[str, Any], user_keys: dict[str, str]) -> None:
    for name, params in chosen.items():
        for key in _set_keys(params):
            for user_key, value in user_keys.items():
                if _within(user_key, key):
                    where = next((f"generalization.{name}.{p}" for p in params
                                  if key in _changes(p)), None)
                    hint = f"{where}={value}" if where else f"generalization.{name}.set.{user_key}={value}"
                    raise ConfigError(user_key, f"is set by generalization.{name}, which would override it: to "
                                                f"change the method's value, write {hint} instead")


def _with_methods(cfg: DictConfig, chosen: dict[str, Any], names: Sequence[str],
                  user_keys: dict[str, str]) -> DictConfig:
    """A copy of ``cfg`` from the neutral recipe (except the command line's keys) with methods ``names`` applied;
    the ``generalization`` node keeps every chosen method (it describes the job, not what differs)."""
    out = copy.deepcopy(cfg)
    for key, value in NEUTRAL_RECIPE.items():
        if _has_key(out, key) and not any(_within(u, key) for u in user_keys):
            OmegaConf.update(out, key, value, merge=False)
    for name in names:
        params = chosen[name]
        if params.get("set"):
            with open_dict(out):  # a method may add a key (focal's loss.gamma)
                out.merge_with(params["set"])
        for key, value in params.items():
            if key in APPLIERS:
                APPLIERS.get(key).builder(out, value, params, f"generalization.{name}.{key}")
    return out


def _has_key(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node


def effective_config(plain: dict[str, Any]) -> dict[str, Any]:
    """A resolved config without the keys that do not change what a job trains (:data:`RUN_SPECIFIC_KEYS`): what
    two jobs must differ in to be different configurations."""
    out = copy.deepcopy(plain)
    for key in RUN_SPECIFIC_KEYS:
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def _check_effects(cfg: DictConfig, chosen: dict[str, Any], effective: DictConfig,
                   user_keys: dict[str, str]) -> None:
    """Every chosen method changes the resolved config against the same methods without it; together they change
    it against baseline's."""
    names = [n for n in chosen if n != "baseline"]
    if not names:
        return
    resolved = effective_config(to_plain(effective))
    for name in names:
        rest = [n for n in chosen if n != name]
        plain = effective_config(to_plain(_with_methods(cfg, chosen, rest, user_keys)))
        if plain == resolved:
            raise ConfigError(f"generalization.{name}", f"no effect here: {_why_no_effect(chosen[name], plain)}")
    if len(names) > 1 and effective_config(to_plain(_with_methods(cfg, chosen, [], user_keys))) == resolved:
        raise ConfigError("generalization", f"no effect here: together, {' and '.join(names)} leave the config "
                                            f"as baseline's")


def _why_no_effect(params: dict, plain: dict[str, Any]) -> str:
    keys = _set_keys(params) + _applier_keys(params, assigning=False)
    if not keys:
        return (f"it declares nothing to change (a 'set' mapping, or one of the parameters "
                f"{', '.join(APPLIERS)})")
    return ", ".join(f"{key} is already {_show(_lookup(plain, key))}" for key in dict.fromkeys(keys))


def _lookup(plain: dict[str, Any], key: str) -> Any:
    node: Any = plain
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _show(value: Any) -> str:
    """A value as the command line writes it: focal, null, true, 0.5, {"crop": {"padding": 3}}."""
    return value if isinstance(value, str) else json.dumps(value)
