"""MNIST, Fashion-MNIST, KMNIST, CIFAR-10, CIFAR-100 and SVHN through torchvision's dataset classes.

Files are read from ``data.root`` in torchvision's own layout (so an existing torchvision download is reused) and
nothing is downloaded unless ``data.download=true``. Each set keeps its official test split; the pixels stay uint8
(N, C, H, W) in memory and become floats in [0, 1] batch by batch on the device.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrun.data.torchvision_layout import SETS, TorchvisionSet, missing_files, not_found
from cnnrun.errors import ConfigError


def _array(values: Any) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))


def _read(spec: TorchvisionSet, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """One split as uint8 (N, C, H, W) and int64 labels, read by torchvision's class."""
    ds = spec.open(root, train, download=False)
    data = _array(ds.data)
    if spec.cls_name.startswith("CIFAR"):
        data = data.permute(0, 3, 1, 2)  # torchvision keeps CIFAR as (N, H, W, C)
    elif data.dim() == 3:
        data = data.unsqueeze(1)  # MNIST-like: (N, H, W)
    labels = _array(ds.labels if spec.cls_name == "SVHN" else ds.targets).to(torch.int64)
    classes = list(getattr(ds, "classes", None) or []) or None
    return data.contiguous(), labels, classes


@lru_cache(maxsize=2)
def _load_cached(name: str, root: str, stamp: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                               list[str] | None]:
    spec, path = SETS[name], Path(root)
    try:
        x, y, classes = _read(spec, path, train=True)
        test_x, test_y, _ = _read(spec, path, train=False)
    except (RuntimeError, OSError, ValueError, TypeError, KeyError, EOFError, AssertionError) as err:
        raise ConfigError("data.root", f"the {name} files in {spec.folder(path)} cannot be read ({err}); they may "
                                       f"be incomplete or corrupted: delete them and download again with "
                                       f"python -m cnnrun data={name} data.download=true") from None
    return x, y, test_x, test_y, classes


def load(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The training pool and the official test split of ``name`` from ``cfg['root']``."""
    spec = SETS[name]
    root = Path(os.path.expanduser(str(cfg["root"]))).resolve()
    if cfg["download"] and missing_files(spec, root):
        try:
            for train in (True, False):
                spec.open(root, train, download=True)
        except Exception as err:  # network errors come in many types; the user needs the message, not the trace
            raise ConfigError("data.download", f"downloading {name} into {root} failed: {type(err).__name__}: "
                                               f"{err}") from None
    missing = missing_files(spec, root)
    if missing:
        raise not_found(spec, root, missing)
    folder = spec.folder(root)
    stamp = tuple((f, (folder / f).stat().st_mtime_ns, (folder / f).stat().st_size) for f in spec.files)
    x, y, test_x, test_y, classes = _load_cached(name, str(root), stamp)
    if tuple(x.shape[1:]) != spec.shape:  # not torchvision's format
        raise ConfigError("data.root", f"the {name} files in {folder} hold images of shape {tuple(x.shape[1:])}, "
                                       f"expected {spec.shape}")
    return {"x": x, "y": y, "test_x": test_x, "test_y": test_y, "classes": classes, "value_range": (0.0, 1.0)}
