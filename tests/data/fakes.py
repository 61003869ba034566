"""Small data sets written in the real on-disk formats that torchvision reads (random pixels), for tests without a
network: MNIST idx files, CIFAR python pickles, SVHN .mat files, and folders of PNG images."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np

MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


def _labels(rng: np.random.RandomState, n: int, classes: int) -> np.ndarray:
    """Every class present, the rest random, shuffled."""
    y = np.concatenate([np.arange(classes), rng.randint(0, classes, n - classes)])
    rng.shuffle(y)
    return y.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format (LeCun): a big-endian magic number (0, 0, type 0x08 = ubyte, dims), the sizes, the bytes."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fake_mnist(root: Path, name: str = "mnist", n_train: int = 60, n_test: int = 20, seed: int = 0):
    """root/<MNIST|FashionMNIST|KMNIST>/raw/ with the four uncompressed idx files torchvision reads; returns the
    arrays written: (train images (N, 28, 28), train labels, test images, test labels)."""
    rng = np.random.RandomState(seed)
    raw = root / MNIST_FOLDERS[name] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
        y = _labels(rng, n, 10)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out += [x, y]
    return tuple(out)


def fake_cifar(root: Path, classes: int = 10, n_train: int = 150, n_test: int = 50, seed: int = 0):
    """cifar-10-batches-py/ (5 training batches, test_batch, batches.meta) or cifar-100-python/ (train, test,
    meta) as python pickles of (N, 3072) uint8 rows in CHW order; returns (train (N, 3, 32, 32), labels, test,
    labels)."""
    rng = np.random.RandomState(seed)
    x = rng.randint(0, 256, (n_train, 3, 32, 32)).astype(np.uint8)
    y = _labels(rng, n_train, classes).astype(np.int64)
    tx = rng.randint(0, 256, (n_test, 3, 32, 32)).astype(np.uint8)
    ty = _labels(rng, n_test, classes).astype(np.int64)

    def dump(path: Path, obj) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f)

    if classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            dump(folder / f"data_batch_{i}", {"data": x[part].reshape(len(part), -1), "labels": y[part].tolist()})
        dump(folder / "test_batch", {"data": tx.reshape(n_test, -1), "labels": ty.tolist()})
        dump(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        dump(folder / "train", {"data": x.reshape(n_train, -1), "fine_labels": y.tolist(),
                                "coarse_labels": (y // 5).tolist()})
        dump(folder / "test", {"data": tx.reshape(n_test, -1), "fine_labels": ty.tolist(),
                               "coarse_labels": (ty // 5).tolist()})
        dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(classes)],
                               "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return x, y, tx, ty


def fake_svhn(root: Path, n_train: int = 80, n_test: int = 30, seed: int = 0):
    """train_32x32.mat and test_32x32.mat as the SVHN site ships them: X (32, 32, 3, N) uint8 and y (N, 1) in
    1..10, where 10 means the digit 0; returns (train (N, 3, 32, 32), digits, test, digits)."""
    from scipy.io import savemat

    rng = np.random.RandomState(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
        digits = _labels(rng, n, 10).astype(np.int64)
        stored = np.where(digits == 0, 10, digits).reshape(n, 1).astype(np.uint8)
        savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": stored})
        out += [x, digits]
    return tuple(out)


def presence_only(fpath, md5=None) -> bool:
    """torchvision's check_integrity without the checksum (fake files cannot match the real ones' MD5)."""
    return os.path.isfile(fpath)


def write_png_folder(root: Path, classes: dict[str, int], size=(12, 10), mode: str = "RGB", seed: int = 0):
    """root/<class>/<i>.png with random pixels; returns {path: (pixels as saved, class name)}."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    written = {}
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = rng.randint(0, 256, shape).astype(np.uint8)
            path = root / name / f"{i:03d}.png"
            Image.fromarray(pixels, mode=mode).save(path)
            written[str(path)] = (pixels, name)
    return written
