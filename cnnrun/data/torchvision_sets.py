"""MNIST, Fashion-MNIST, KMNIST, CIFAR-10, CIFAR-100 and SVHN through torchvision's dataset classes.

Files are read from ``data.root`` in torchvision's own layout (so an existing torchvision download is reused) and
nothing is downloaded unless ``data.download=true``. Each set keeps its official test split; the pixels stay uint8
(N, C, H, W) in memory and become floats in [0, 1] batch by batch on the device.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cnnrun.errors import ConfigError


@dataclass(frozen=True)
class TorchvisionSet:
    """Where torchvision keeps a data set under its root, and how to read one split of it."""

    name: str
    cls_name: str
    shape: tuple[int, int, int]
    num_classes: int
    folder: Callable[[Path], Path]  # the folder holding the files, from the root
    files: tuple[str, ...]  # the files torchvision reads, in that folder

    def dataset_class(self):
        import torchvision.datasets as tvd

        return getattr(tvd, self.cls_name)

    def open(self, root: Path, train: bool, download: bool):
        cls = self.dataset_class()
        if self.cls_name == "SVHN":
            return cls(str(root), split="train" if train else "test", download=download)
        return cls(str(root), train=train, download=download)


def _mnist_files() -> tuple[str, ...]:
    return ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


SETS: dict[str, TorchvisionSet] = {s.name: s for s in (
    TorchvisionSet("mnist", "MNIST", (1, 28, 28), 10, lambda r: r / "MNIST" / "raw", _mnist_files()),
    TorchvisionSet("fashion_mnist", "FashionMNIST", (1, 28, 28), 10, lambda r: r / "FashionMNIST" / "raw",
                   _mnist_files()),
    TorchvisionSet("kmnist", "KMNIST", (1, 28, 28), 10, lambda r: r / "KMNIST" / "raw", _mnist_files()),
    TorchvisionSet("cifar10", "CIFAR10", (3, 32, 32), 10, lambda r: r / "cifar-10-batches-py",
                   tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")),
    TorchvisionSet("cifar100", "CIFAR100", (3, 32, 32), 100, lambda r: r / "cifar-100-python",
                   ("train", "test", "meta")),
    TorchvisionSet("svhn", "SVHN", (3, 32, 32), 10, lambda r: r, ("train_32x32.mat", "test_32x32.mat")),
)}


def _missing(spec: TorchvisionSet, root: Path) -> list[Path]:
    folder = spec.folder(root)
    return [folder / f for f in spec.files if not (folder / f).is_file()]


def _not_found(spec: TorchvisionSet, root: Path, missing: list[Path]) -> ConfigError:
    folder = spec.folder(root)
    names = ", ".join(p.name for p in missing)
    return ConfigError("data.root", f"{spec.name} not found: expected {names} in {folder}. Download it with: "
                                    f"python -m cnnrun data={spec.name} data.download=true (into data.root = "
                                    f"{root}; set data.root or the CNNRUN_DATA variable to use another folder)")


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
    if cfg["download"] and _missing(spec, root):
        try:
            for train in (True, False):
                spec.open(root, train, download=True)
        except Exception as err:  # network errors come in many types; the user needs the message, not the trace
            raise ConfigError("data.download", f"downloading {name} into {root} failed: {type(err).__name__}: "
                                               f"{err}") from None
    missing = _missing(spec, root)
    if missing:
        raise _not_found(spec, root, missing)
    folder = spec.folder(root)
    stamp = tuple((f, (folder / f).stat().st_mtime_ns, (folder / f).stat().st_size) for f in spec.files)
    x, y, test_x, test_y, classes = _load_cached(name, str(root), stamp)
    if tuple(x.shape[1:]) != spec.shape:  # not torchvision's format
        raise ConfigError("data.root", f"the {name} files in {folder} hold images of shape {tuple(x.shape[1:])}, "
                                       f"expected {spec.shape}")
    return {"x": x, "y": y, "test_x": test_x, "test_y": test_y, "classes": classes, "value_range": (0.0, 1.0)}


def check(name: str, cfg: dict[str, Any]) -> None:
    """Config checks before anything is read: the input shape must be the files' shape."""
    spec = SETS[name]
    if list(cfg["input_shape"] or []) != list(spec.shape):
        raise ConfigError("data.input_shape", f"{name} images are {list(spec.shape)} (channels, height, width); "
                                              f"got {cfg['input_shape']}: set data.input_shape="
                                              f"[{','.join(map(str, spec.shape))}]")
    if spec.num_classes != cfg["num_classes"]:
        raise ConfigError("data.num_classes", f"{name} has {spec.num_classes} classes, got {cfg['num_classes']}")
    if not isinstance(cfg["download"], bool):
        raise ConfigError("data.download", f"must be true or false, got {cfg['download']!r}")


def check_files(name: str, cfg: dict[str, Any]) -> None:
    """Without ``data.download``, the files must be in ``data.root``: a run that will read them says so before
    Lightning loads, not seconds later when it reads them."""
    spec = SETS[name]
    root = Path(os.path.expanduser(str(cfg["root"]))).resolve()
    missing = _missing(spec, root)
    if missing and not cfg["download"]:
        raise _not_found(spec, root, missing)
