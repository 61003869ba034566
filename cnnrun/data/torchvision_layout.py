"""Where torchvision keeps MNIST, Fashion-MNIST, KMNIST, CIFAR-10, CIFAR-100 and SVHN under a root folder, and the
checks of a ``data=<one of them>`` config that need only that: its shape and classes, and whether its files are there.
Light module (standard library only): these checks run before torch is imported, so a data set that is not on disk is
reported within a second of the command. Reading the files: :mod:`cnnrun.data.torchvision_sets`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


def missing_files(spec: TorchvisionSet, root: Path) -> list[Path]:
    folder = spec.folder(root)
    return [folder / f for f in spec.files if not (folder / f).is_file()]


def not_found(spec: TorchvisionSet, root: Path, missing: list[Path]) -> ConfigError:
    folder = spec.folder(root)
    names = ", ".join(p.name for p in missing)
    return ConfigError("data.root", f"{spec.name} not found: expected {names} in {folder}. Download it with: "
                                    f"python -m cnnrun data={spec.name} data.download=true (into data.root = "
                                    f"{root}; set data.root or the CNNRUN_DATA variable to use another folder)")


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
    torch loads, not seconds later when it reads them."""
    spec = SETS[name]
    root = Path(os.path.expanduser(str(cfg["root"]))).resolve()
    missing = missing_files(spec, root)
    if missing and not cfg["download"]:
        raise not_found(spec, root, missing)
