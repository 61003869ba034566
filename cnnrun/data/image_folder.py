"""Any folder of class subfolders (``root/<class>/<image>``), torchvision's ImageFolder layout.

Unless the config sets them, the number of classes is the number of class subfolders (:func:`folder_num_classes`)
and the channels are 1 for a folder of grey images, else 3 (:func:`folder_num_channels`), read when the config is
resolved, before the model is built. Images are decoded (PIL, which reads every format ImageFolder lists),
converted to ``channels`` (1: grey, 3: RGB) and resized to ``image_size`` (``resize: crop`` scales the shorter side
and takes the centre; ``stretch`` ignores the aspect ratio). Then, by ``cache``:

- ``memory``: all images are decoded once into one uint8 tensor, saved as ``<root>/.cnnrun-cache/<key>.pt`` (the key
  covers the file list, sizes, times and the decode settings) when the folder is writable, and read from there
  next time; training then takes the in-memory path.
- ``none``: images stay files, decoded by DataLoader workers every epoch (the streamed path).
- ``auto`` (default): ``memory`` when the decoded tensor fits in ``max_memory_mb``, else ``none``.

``val_root`` and ``test_root`` (same class folders) give fixed validation and test sets; without them those splits
are carved out of ``root``, stratified, with ``val_fraction`` and ``test_fraction``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cnnrun.atomic import atomic_write
from cnnrun.errors import ConfigError

log = logging.getLogger(__name__)
CACHE_DIR = ".cnnrun-cache"
CACHE_VERSION = 1
RESIZE_MODES = ("crop", "stretch")
CACHE_MODES = ("auto", "memory", "none")


class UnreadableImage(RuntimeError):
    """An image file that PIL cannot decode."""


def decode(path: str, channels: int, size: tuple[int, int], resize: str) -> torch.Tensor:
    """One image file as uint8 (channels, height, width) of ``size``: decoded by PIL (JPEGs at a reduced scale
    when that still covers ``size``), resized by torchvision (bilinear, antialiased)."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    h, w = size
    try:
        with Image.open(path) as im:
            # JPEGs: let the decoder skip what the resize would throw away (it keeps at least the asked size)
            scale = max(h / im.height, w / im.width) if resize == "crop" else None
            im.draft("L" if channels == 1 else "RGB", (w, h) if scale is None else
                     (max(1, round(im.width * scale)), max(1, round(im.height * scale))))
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except Exception as err:  # PIL raises many types for bad files
        raise UnreadableImage(f"cannot read image {path}: {type(err).__name__}: {err}") from None
    img = torch.from_numpy(arr.copy()).view(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1)
    if tuple(img.shape[-2:]) != (h, w):
        if resize == "crop":  # the shorter side to the size, then the centre
            img = TF.center_crop(TF.resize(img, [min(h, w)], antialias=True), [h, w])
        else:
            img = TF.resize(img, [h, w], antialias=True)
    return img.contiguous()


class ImageFiles(torch.utils.data.Dataset):
    """Image files with labels; item i is (uint8 tensor (C, H, W), label)."""

    def __init__(self, paths: Sequence[str], labels: torch.Tensor, channels: int, size: tuple[int, int],
                 resize: str = "crop", num_workers: int = 0):
        self.paths = list(paths)
        self.labels = labels
        self.channels, self.size, self.resize = channels, tuple(size), resize
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), self.channels, *self.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return decode(self.paths[i], self.channels, self.size, self.resize), int(self.labels[i])

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "ImageFiles":
        index = np.asarray(index, dtype=np.int64)
        return ImageFiles([self.paths[i] for i in index], self.labels[torch.from_numpy(index)], self.channels,
                          self.size, self.resize, self.num_workers)

    def decode_all(self) -> torch.Tensor:
        """Every image decoded into one uint8 tensor (N, C, H, W), by ``num_workers`` DataLoader workers.
        An unreadable file is a ConfigError naming it."""
        loader = torch.utils.data.DataLoader(_Checked(self), batch_size=64, num_workers=self.num_workers,
                                             collate_fn=_collate_checked)
        out = torch.empty(self.shape, dtype=torch.uint8)
        at = 0
        for images, errors in loader:
            bad = [e for e in errors if e]
            if bad:
                raise ConfigError("data.root", bad[0])
            out[at:at + len(images)] = images
            at += len(images)
        return out

    def sample_tensor(self, max_samples: int, seed: int = 0) -> torch.Tensor:
        """A seeded random sample of at most ``max_samples`` images, decoded (for normalisation statistics)."""
        n = len(self)
        pick = np.sort(np.random.RandomState(seed).choice(n, size=min(n, max_samples), replace=False))
        return self.subset(pick).decode_all()


class _Checked(torch.utils.data.Dataset):
    """Items as (image, error message or ''), so that a bad file is reported by name from any worker."""

    def __init__(self, files: ImageFiles):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        try:
            return self.files[i][0], ""
        except Exception as err:  # decode errors of any kind, reported by file
            f = self.files
            msg = str(err) if isinstance(err, UnreadableImage) else f"cannot read image {f.paths[i]}: {err}"
            return torch.zeros((f.channels, *f.size), dtype=torch.uint8), msg


def _collate_checked(items):
    return torch.stack([x for x, _ in items]), [e for _, e in items]


# -- enumerating a folder ------------------------------------------------------------------------------------------
def find_classes(root: Path, key: str) -> list[str]:
    """The class subfolders of ``root``, sorted; hidden folders (``.cnnrun-cache``, ``.ipynb_checkpoints``) are not
    classes."""
    if not root.is_dir():
        raise ConfigError(key, f"no folder at {root} (expected one subfolder of images per class)")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ConfigError(key, f"{root} has no class subfolders (expected {root}/<class>/<image files>)")
    return classes


def list_images(root: Path, classes: list[str], key: str) -> tuple[list[str], list[int]]:
    """(paths, labels) of every image file under ``root/<class>``, by torchvision's ``make_dataset``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    try:
        samples = make_dataset(str(root), {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS,
                               allow_empty=False)
    except FileNotFoundError as err:
        raise ConfigError(key, f"in {root}: {err}") from None
    return [p for p, _ in samples], [c for _, c in samples]


def image_mode(path: str, key: str) -> str:
    """The PIL mode of an image file (``L``, ``RGB``, ...), from its header (fast: no decoding); a file that is not
    an image is a ConfigError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode
    except Exception as err:  # PIL raises many types
        raise ConfigError(key, f"cannot read image {path}: {type(err).__name__}: {err}") from None


def check_headers(paths: Sequence[str], key: str, workers: int = 8) -> None:
    """Open every file's header: a file that is not an image is a ConfigError before training starts. Used on the
    streamed path, where images are decoded only during training."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(partial(image_mode, key=key), paths):
            pass


def folder_root(value: Any) -> Path:
    """A root as written in the config (``~`` allowed), as an absolute path."""
    return Path(os.path.expanduser(str(value))).resolve()


def folder_num_classes(root: Any) -> int:
    """The number of classes of the folder: its class subfolders, as torchvision's ImageFolder finds them (hidden
    folders aside, such as the image cache)."""
    return len(find_classes(folder_root(root), "data.root"))


def folder_num_channels(root: Any, chunk: int = 256) -> int:
    """1 when every image of the folder is grey (PIL's base mode ``L``: modes 1, L, LA, I, F), else 3. Headers are
    read in file order, a chunk at a time, until the first colour image."""
    from PIL import Image

    root = folder_root(root)
    paths, _ = list_images(root, find_classes(root, "data.root"), "data.root")
    with ThreadPoolExecutor(max_workers=8) as pool:
        for start in range(0, len(paths), chunk):
            modes = pool.map(partial(image_mode, key="data.root"), paths[start:start + chunk])
            if any(Image.getmodebase(mode) != "L" for mode in modes):
                return 3
    return 1


# -- the source ----------------------------------------------------------------------------------------------------
def _size(cfg: dict[str, Any]) -> tuple[int, int]:
    s = cfg["image_size"]
    return (s, s)


def _cache_key(paths: Sequence[str], channels: int, size: tuple[int, int], resize: str) -> str:
    h = hashlib.sha1(json.dumps([CACHE_VERSION, channels, list(size), resize]).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _in_memory(files: ImageFiles, root: Path) -> torch.Tensor:
    """The decoded tensor, from the cache file next to the data when it is current, else decoded and saved."""
    path = root / CACHE_DIR / f"{_cache_key(files.paths, files.channels, files.size, files.resize)}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if tuple(cached["x"].shape) == files.shape and torch.equal(cached["y"], files.labels):
                return cached["x"]
        except Exception as err:  # a damaged cache is rebuilt
            log.warning("ignoring the unreadable image cache %s: %s", path, err)
    x = files.decode_all()
    try:
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, lambda f: torch.save({"x": x, "y": files.labels}, f))
    except OSError as err:
        log.warning("cannot write the image cache in %s (%s); images will be decoded again next time", root, err)
    return x


def load(cfg: dict[str, Any]) -> dict[str, Any]:
    channels, size, resize = cfg["channels"], _size(cfg), cfg["resize"]
    workers = num_workers(cfg)
    parts: dict[str, tuple[Path, ImageFiles]] = {}
    classes = None
    for part, key in (("x", "root"), ("val_x", "val_root"), ("test_x", "test_root")):
        if part != "x" and not cfg[key]:
            continue
        root = folder_root(cfg[key])
        found = find_classes(root, f"data.{key}")
        if classes is None:
            classes = found
        elif found != classes:
            raise ConfigError(f"data.{key}", f"has the classes {found} but data.root has {classes}; they must match")
        paths, labels = list_images(root, classes, f"data.{key}")
        parts[part] = (root, ImageFiles(paths, torch.tensor(labels, dtype=torch.int64), channels, size, resize,
                                        workers))
    mode = cfg["cache"]
    if mode == "auto":
        total = sum(int(np.prod(files.shape)) for _, files in parts.values())
        mode = "memory" if total <= cfg["max_memory_mb"] * 2 ** 20 else "none"
    out: dict[str, Any] = {"classes": classes, "value_range": (0.0, 1.0)}
    for part, (root, files) in parts.items():
        label = part.replace("_x", "_y") if part != "x" else "y"
        out[label] = files.labels
        if mode == "memory":
            out[part] = _in_memory(files, root)
        else:
            check_headers(files.paths, "data." + {"x": "root", "val_x": "val_root", "test_x": "test_root"}[part],
                          workers=max(4, workers))
            out[part] = files
    return out


def num_workers(cfg: dict[str, Any]) -> int:
    value = cfg["num_workers"]
    return min(8, os.cpu_count() or 1) if value == "auto" else value


def check(cfg: dict[str, Any]) -> None:
    channels, size = cfg["channels"], cfg["image_size"]
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ConfigError("data.channels", f"must be 1 (grey) or 3 (RGB), got {channels!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError("data.image_size", f"must be a positive integer (square images), got {size!r}")
    expected = [channels, size, size]
    if list(cfg["input_shape"] or []) != expected:
        raise ConfigError("data.input_shape", f"must be [channels, image_size, image_size] = {expected}, got "
                                              f"{cfg['input_shape']} (images are resized to data.image_size)")
    if not cfg["root"]:
        raise ConfigError("data.root", "set it to a folder with one subfolder of images per class")
    if cfg["resize"] not in RESIZE_MODES:
        raise ConfigError("data.resize", f"must be one of {', '.join(RESIZE_MODES)}, got {cfg['resize']!r}")
    if cfg["cache"] not in CACHE_MODES:
        raise ConfigError("data.cache", f"must be one of {', '.join(CACHE_MODES)}, got {cfg['cache']!r}")
    limit = cfg["max_memory_mb"]
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
        raise ConfigError("data.max_memory_mb", f"must be a non-negative number of MiB, got {limit!r}")
    workers = cfg["num_workers"]
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError("data.num_workers", f"must be 'auto' or an integer >= 0, got {workers!r}")
