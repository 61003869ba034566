"""Data sources -> in-memory splits; ``load_data(data_cfg)`` dispatches on ``data.name``."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from cnnrun.data.splits import Splits, fraction, stratified_split
from cnnrun.errors import ConfigError, did_you_mean

SOURCES: dict[str, Callable[[dict[str, Any]], tuple[torch.Tensor, torch.Tensor]]] = {}


def source(name: str):
    """Register a data source: a function from the data config to all samples (x, y)."""
    def decorator(fn):
        SOURCES[name] = fn
        return fn
    return decorator


@source("digits")
def _digits(cfg):
    from cnnrun.data.digits import load_digits_tensors
    return load_digits_tensors(cfg["input_shape"])


@source("synthetic")
def _synthetic(cfg):
    from cnnrun.data.synthetic import load_synthetic_tensors
    return load_synthetic_tensors(cfg["input_shape"], cfg["num_classes"], cfg.get("num_samples", 1024),
                                  cfg.get("noise", 1.0), cfg.get("split_seed", 0))


def check_data_config(cfg: dict[str, Any]) -> None:
    """Validate the keys every data config shares, before anything is loaded."""
    name = cfg.get("name")
    if name not in SOURCES:
        raise ConfigError("data.name", f"unknown data set '{name}'{did_you_mean(name, SOURCES)} "
                                       f"(known: {', '.join(sorted(SOURCES))})")
    shape = cfg.get("input_shape")
    if (not isinstance(shape, list) or not 2 <= len(shape) <= 4
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ConfigError("data.input_shape", f"must be [channels, *spatial] with 1 to 3 spatial sizes, all "
                                              f"positive integers, got {shape!r}")
    for key, minimum in (("num_classes", 2), ("batch_size", 1)):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"data.{key}", f"must be an integer >= {minimum}, got {value!r}")
    fraction("data.test_fraction", cfg.get("test_fraction", 0.2), allow_zero=False, upper_open=True)
    fraction("data.val_fraction", cfg.get("val_fraction", 0.1), allow_zero=False, upper_open=True)
    fraction("data.train_fraction", cfg.get("train_fraction", 1.0), allow_zero=False)


def load_data(cfg: dict[str, Any]) -> Splits:
    """Load the data set described by ``cfg`` (a plain data config) into stratified, disjoint splits."""
    check_data_config(cfg)
    x, y = SOURCES[cfg["name"]](cfg)
    if tuple(x.shape[1:]) != tuple(cfg["input_shape"]):
        raise ConfigError("data.input_shape", f"is {cfg['input_shape']} but the data have shape "
                                              f"{list(x.shape[1:])}")
    found = int(y.max()) + 1
    if found != cfg["num_classes"]:
        raise ConfigError("data.num_classes", f"is {cfg['num_classes']} but {cfg['name']} has {found} classes")
    train, val, test = stratified_split(y.numpy(), cfg.get("test_fraction", 0.2), cfg.get("val_fraction", 0.1),
                                        cfg.get("train_fraction", 1.0), cfg.get("split_seed", 0))
    t = {k: torch.from_numpy(v) for k, v in (("train", train), ("val", val), ("test", test))}
    splits = Splits(x[t["train"]], y[t["train"]], x[t["val"]], y[t["val"]], x[t["test"]], y[t["test"]],
                    num_classes=cfg["num_classes"])
    if cfg.get("normalize", False):
        splits.normalize()
    return splits


__all__ = ["Splits", "load_data", "check_data_config", "source", "SOURCES", "stratified_split"]
