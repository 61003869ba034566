"""Data sources -> splits; ``load_data(data_cfg)`` dispatches on ``data.name``.

A source is a function from the data config to its samples: a tuple ``(x, y)`` of all samples, or a dict with
``x``, ``y`` (the training pool) and optionally ``test_x``/``test_y`` and ``val_x``/``val_y`` (fixed splits, e.g.
an official test set), ``classes`` (names) and ``value_range`` ((0, 1) for images). Register one in
:data:`SOURCES` with ``@SOURCES.register(name, check=..., check_files=...)``; ``check`` validates its own keys
before anything is loaded, ``check_files`` (optional) that its files are there, for a run that will read them;
``light=True`` says that both need neither torch nor numpy, so that they run before torch is imported.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cnnrun.checks import fraction
from cnnrun.errors import ConfigError, did_you_mean
from cnnrun.lazy import lazy_exports
from cnnrun.registry import Registry

if TYPE_CHECKING:  # numpy and torch load with the data: the config checks run before torch is imported
    import numpy as np

    from cnnrun.data.splits import Splits

SOURCES = Registry("data set", inputs=1, inputs_doc="the data config")
BALANCE = ("none", "sampler", "loss_weights")


# -- the built-in sources (each imports its module only when used) ------------------------------------------------
def _check_digits(cfg):
    from cnnrun.data.digits import check_shape
    check_shape(cfg["input_shape"])


@SOURCES.register("digits", check=_check_digits)
def _digits(cfg):
    from cnnrun.data.digits import load_digits_tensors
    x, y = load_digits_tensors(cfg["input_shape"])
    return {"x": x, "y": y, "value_range": (0.0, 1.0), "classes": [str(i) for i in range(10)]}


@SOURCES.register("synthetic")
def _synthetic(cfg):
    from cnnrun.data.synthetic import load_synthetic_tensors
    return load_synthetic_tensors(cfg["input_shape"], cfg["num_classes"], cfg["num_samples"], cfg["noise"],
                                  cfg["split_seed"])


def _register_torchvision(name: str) -> None:
    def load(cfg):
        from cnnrun.data import torchvision_sets
        return torchvision_sets.load(name, cfg)

    def check(cfg):
        from cnnrun.data import torchvision_layout
        torchvision_layout.check(name, cfg)

    def check_files(cfg):
        from cnnrun.data import torchvision_layout
        torchvision_layout.check_files(name, cfg)

    SOURCES.register(name, load, check=check, check_files=check_files, light=True)


for _name in ("mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "svhn"):
    _register_torchvision(_name)


def _register_module(name: str) -> None:
    """The source ``name`` whose module ``cnnrun.data.<name>`` has ``load(cfg)`` and ``check(cfg)``."""
    module = f"cnnrun.data.{name}"

    def load(cfg):
        return importlib.import_module(module).load(cfg)

    def check(cfg):
        importlib.import_module(module).check(cfg)

    SOURCES.register(name, load, check=check)


for _name in ("image_folder", "mnist1d", "moving_digits"):
    _register_module(_name)


# -- checking and loading -------------------------------------------------------------------------------------------
def check_data_config(cfg: dict[str, Any], reads: bool = False) -> None:
    """Validate the data config before anything is loaded: the source's own keys, then those every data set shares
    (shape, classes, batch size, fractions, imbalance, balance, augment); with ``reads`` (a run that will load the
    data), that the source's files are there, where it can tell (``check_files``)."""
    from cnnrun.data.augment import build_augment

    source = SOURCES.get(cfg["name"], path="data.name")
    check = source.metadata.get("check")
    if check is not None:  # first: it names the source's own keys (image_size rather than the shape made from it)
        check(cfg)
    shape = cfg["input_shape"]
    if (not isinstance(shape, list) or not 2 <= len(shape) <= 4
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ConfigError("data.input_shape", f"must be [channels, *spatial] with 1 to 3 spatial sizes, all "
                                              f"positive integers, got {shape!r}")
    check_shared_data_values(cfg)
    build_augment(cfg["augment"], shape)
    check_files = source.metadata.get("check_files")
    if reads and check_files is not None:
        check_files(cfg)


def check_light_source(cfg: dict[str, Any], reads: bool = False) -> None:
    """A source registered with ``light=True`` (its ``check`` and ``check_files`` import neither torch nor numpy: the
    torchvision sets' shape, classes and files) is checked before torch is imported, so that a data set that is not
    on disk is reported within a second; :func:`check_data_config` checks it again with the rest."""
    source = SOURCES.get(cfg["name"], path="data.name")
    if not source.metadata.get("light"):
        return
    for name in ("check", "check_files") if reads else ("check",):
        check = source.metadata.get(name)
        if check is not None:
            check(cfg)


def check_shared_data_values(cfg: dict[str, Any]) -> None:
    """The source's name and the settings every source shares whatever it loads (classes, batch size, fractions,
    imbalance, balance, split seed): checked before torch is imported (the sources' own checks import it)."""
    SOURCES.get(cfg["name"], path="data.name")
    for key, minimum in (("num_classes", 2), ("batch_size", 1)):
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"data.{key}", f"must be an integer >= {minimum}, got {value!r}")
    if cfg["test_fraction"] is not None:  # None: the data set has its own test split
        fraction("data.test_fraction", cfg["test_fraction"], allow_zero=False, upper_open=True)
    fraction("data.val_fraction", cfg["val_fraction"], allow_zero=False, upper_open=True)
    fraction("data.train_fraction", cfg["train_fraction"], allow_zero=False)
    imbalance = cfg["imbalance"]
    if isinstance(imbalance, bool) or not isinstance(imbalance, (int, float)) or not imbalance >= 1:
        raise ConfigError("data.imbalance", f"is the ratio of the largest to the smallest training class: a number "
                                            f">= 1 (1 = unchanged), got {imbalance!r}")
    balance = cfg["balance"]
    if balance not in BALANCE:
        raise ConfigError("data.balance", f"must be one of {', '.join(BALANCE)}, got {balance!r}"
                                          f"{did_you_mean(str(balance), BALANCE)}")
    split_seed = cfg["split_seed"]
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ConfigError("data.split_seed", f"must be a non-negative integer, got {split_seed!r}")


def _as_dict(loaded: Any) -> dict[str, Any]:
    if isinstance(loaded, dict):
        return loaded
    x, y = loaded
    return {"x": x, "y": y}


def _take(x: Any, index: np.ndarray) -> Any:
    """Rows ``index`` of a tensor, or a subset of a dataset of files."""
    import torch

    if isinstance(x, torch.Tensor):
        return x[torch.from_numpy(index)]
    return x.subset(index)


def load_data(cfg: dict[str, Any]) -> Splits:
    """Load the data set described by ``cfg`` (a plain data config) into stratified, disjoint splits.

    Without fixed splits, ``test_fraction`` of all samples is held out, then ``val_fraction`` of the rest. A fixed
    test set is used as given and validation is carved out of the training pool. The training split then keeps a
    stratified ``train_fraction``, and ``imbalance`` > 1 makes it long-tailed (validation and test stay as they
    are). Everything is fixed by ``split_seed``.
    """
    import numpy as np
    import torch

    from cnnrun.data.splits import Splits, long_tail_subset, stratified_split

    check_data_config(cfg)
    data = _as_dict(SOURCES.get(cfg["name"]).builder(cfg))
    expected = tuple(cfg["input_shape"])
    labels = {}
    for part in ("", "val_", "test_"):
        if data.get(f"{part}x") is None:
            continue
        x, y = data[f"{part}x"], data[f"{part}y"]
        if tuple(x.shape[1:]) != expected:
            raise ConfigError("data.input_shape", f"is {list(expected)} but the data have shape {list(x.shape[1:])}")
        labels[part] = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    found = max(int(v.max()) for v in labels.values() if len(v)) + 1
    if found != cfg["num_classes"]:
        raise ConfigError("data.num_classes", f"is {cfg['num_classes']} but {cfg['name']} has {found} classes")

    seed = cfg["split_seed"]
    y = labels[""]
    fixed_val, fixed_test = "val_" in labels, "test_" in labels
    test_frac = 0.0 if fixed_test else cfg["test_fraction"]
    val_frac = 0.0 if fixed_val else cfg["val_fraction"]
    train, val, test = stratified_split(y, test_frac, val_frac, cfg["train_fraction"], seed)
    imbalance = cfg["imbalance"]
    if imbalance > 1:
        train = long_tail_subset(y, train, cfg["num_classes"], imbalance, seed)

    def split(index: np.ndarray, part: str) -> tuple[Any, torch.Tensor]:
        if part:  # a fixed split, whole
            return data[f"{part}x"], torch.as_tensor(labels[part], dtype=torch.int64)
        return _take(data["x"], index), torch.from_numpy(y[index].astype(np.int64))

    train_x, train_y = split(train, "")
    val_x, val_y = split(val, "val_" if fixed_val else "")
    test_x, test_y = split(test, "test_" if fixed_test else "")
    splits = Splits(train_x, train_y, val_x, val_y, test_x, test_y, num_classes=cfg["num_classes"],
                    value_range=data.get("value_range"), classes=data.get("classes"))
    if cfg["normalize"]:
        splits.normalize(seed=seed)
    return splits


# ``Splits`` and ``stratified_split`` from :mod:`cnnrun.data.splits`, imported on first use (with numpy and torch)
__getattr__ = lazy_exports(globals(), {"Splits": "cnnrun.data.splits", "stratified_split": "cnnrun.data.splits"})


__all__ = ["Splits", "load_data", "check_data_config", "check_shared_data_values", "SOURCES", "stratified_split"]
