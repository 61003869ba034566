"""Generalization methods (the chapter's 5.17 table): configs in ``conf/generalization/`` that compose.

Each method config is merged at the root (``# @package _global_``) and records itself under
``generalization.<name>`` with a one-line ``description``. Most methods simply set config values (``loss``,
``regularization``, ``optim.weight_decay``, ``data.augment`` ...). Methods that scale a value the run already has
(``width_factor``, ``train_fraction_factor``, ``batch_size_factor`` ...) cannot be written as plain YAML merges;
their parameters are applied here, to the composed config before it is resolved, so that interpolations such as
``${model.width}`` in the layer list see the new value. Light module: OmegaConf only.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from cnnrun.errors import ConfigError, did_you_mean

Applier = Callable[[DictConfig, Any, str], None]


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


def _train_fraction(cfg: DictConfig, factor, where: str) -> None:
    f = _number(factor, where)
    cfg.data.train_fraction = min(1.0, float(cfg.data.get("train_fraction", 1.0)) * f)


def _batch_size(cfg: DictConfig, factor, where: str) -> None:
    f = _number(factor, where)
    cfg.data.batch_size = max(1, int(round(cfg.data.batch_size * f)))


def _lr_scaling(cfg: DictConfig, rule, where: str) -> None:
    """The learning-rate rule that goes with a batch-size factor (applied with it)."""
    rules = ("linear", "sqrt", "none")
    if rule not in rules:
        raise ConfigError(where, f"must be one of {', '.join(rules)}, got {rule!r}")


def _width(cfg: DictConfig, factor, where: str) -> None:
    f = _number(factor, where)
    cfg.model.width = float(_number(_model_key(cfg, "width", where), "model.width")) * f


def _depth(cfg: DictConfig, factor, where: str) -> None:
    f = _number(factor, where)
    depth = _model_key(cfg, "depth", where)
    scaled = _number(depth, "model.depth") * f
    cfg.model.depth = max(1, int(round(scaled))) if isinstance(depth, int) else scaled


def _dropout(cfg: DictConfig, p, where: str) -> None:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
        raise ConfigError(where, f"must be a probability in [0, 1), got {p!r}")
    _model_key(cfg, "dropout", where)
    cfg.model.dropout = float(p)


def _balance(cfg: DictConfig, how, where: str) -> None:
    ways = ("sampler", "loss_weights")
    if how not in ways:
        raise ConfigError(where, f"must be one of {', '.join(ways)}, got {how!r}")
    imbalance = cfg.data.get("imbalance", 1)
    if not isinstance(imbalance, (int, float)) or imbalance <= 1:
        raise ConfigError(where, f"adjusts the class distribution of an imbalanced training set, but "
                                 f"data.imbalance is {imbalance!r}: set data.imbalance > 1 (for example 10) for the "
                                 f"whole comparison")
    with open_dict(cfg.data):
        cfg.data.balance = how


APPLIERS: dict[str, Applier] = {
    "train_fraction_factor": _train_fraction,
    "batch_size_factor": _batch_size,
    "lr_scaling": _lr_scaling,
    "width_factor": _width,
    "depth_factor": _depth,
    "dropout": _dropout,
    "balance": _balance,
}


def methods(cfg: DictConfig | dict) -> dict[str, Any]:
    node = cfg.get("generalization") if cfg is not None else None
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else dict(node)


def method_name(cfg: DictConfig | dict) -> str:
    """'baseline', or the composed methods joined by '+', sorted (``augment+weight_decay``)."""
    names = sorted(k for k in methods(cfg) if k != "baseline")
    return "+".join(names) or "baseline"


def apply_generalization(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` with the methods' scaling parameters applied (validated, with the key named)."""
    chosen = methods(cfg)
    if not chosen:
        return cfg
    cfg = copy.deepcopy(cfg)
    for name, params in chosen.items():
        if not isinstance(params, dict):
            raise ConfigError(f"generalization.{name}", f"must be a mapping with a description, got {params!r}")
        for key in params:
            if key != "description" and key not in APPLIERS:
                raise ConfigError(f"generalization.{name}.{key}",
                                  f"unknown parameter{did_you_mean(key, APPLIERS)} (known: description, "
                                  f"{', '.join(APPLIERS)})")
        for key, value in params.items():
            if key in APPLIERS:
                APPLIERS[key](cfg, value, f"generalization.{name}.{key}")
        factor = params.get("batch_size_factor")
        rule = params.get("lr_scaling", "linear" if factor is not None else None)
        if factor is not None and rule != "none":
            cfg.optim.lr = float(cfg.optim.lr) * (factor if rule == "linear" else math.sqrt(factor))
    return cfg
