"""MNIST-1D (Greydanus & Kobak 2020): 1x40 signals of ten digit templates, generated offline with the ``mnist1d``
package (4,000 training and 1,000 test sequences with its default arguments).

``mnist1d.data.make_dataset`` reseeds NumPy's and Python's global generators; :func:`generate` restores both, so
generating the data never changes the random streams of the rest of the program. Generated arrays are cached in
memory per process and, with ``data.disk_cache=true``, as an ``.npz`` file under ``data.root``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrun.atomic import atomic_write
from cnnrun.errors import ConfigError

LENGTH = 40


def dataset_args(num_samples: int, seed: int, shuffle_seq: bool) -> dict[str, Any]:
    """mnist1d's default generation arguments with ours applied (as a plain dict)."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.update(num_samples=num_samples, seed=seed, shuffle_seq=shuffle_seq)
    return args


def generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """``make_dataset`` with the global NumPy and Python random states saved and restored around it."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def _key(args: dict[str, Any]) -> str:
    relevant = {k: v for k, v in args.items() if k != "url"}
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


@lru_cache(maxsize=4)
def _cached(args_json: str, cache_dir: str | None) -> dict[str, np.ndarray]:
    args = json.loads(args_json)
    path = Path(cache_dir) / f"mnist1d_{_key(args)}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    data = generate(args)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: np.savez(f, **data))
        except OSError as err:
            raise ConfigError("data.root", f"cannot write the MNIST-1D cache in {path.parent}: {err} "
                                           f"(set data.disk_cache=false or another data.root)") from None
    return data


def load(cfg: dict[str, Any]) -> dict[str, Any]:
    args = dataset_args(cfg["num_samples"], cfg["generator_seed"], cfg["shuffle_seq"])
    cache_dir = None
    if cfg["disk_cache"]:
        cache_dir = str(Path(os.path.expanduser(str(cfg["root"]))).resolve() / "mnist1d")
    data = _cached(json.dumps(args, sort_keys=True), cache_dir)

    def tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)

    return {"x": tensor(data["x"]), "y": torch.from_numpy(data["y"].astype(np.int64)),
            "test_x": tensor(data["x_test"]), "test_y": torch.from_numpy(data["y_test"].astype(np.int64)),
            "classes": [str(i) for i in range(10)], "value_range": None}


def check(cfg: dict[str, Any]) -> None:
    if list(cfg["input_shape"] or []) != [1, LENGTH]:
        raise ConfigError("data.input_shape", f"MNIST-1D sequences are [1, {LENGTH}], got {cfg['input_shape']}")
    n = cfg["num_samples"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 50:
        raise ConfigError("data.num_samples", f"must be an integer >= 50 (it is split 80/20 into train and test "
                                              f"with every class in both), got {n!r}")
    seed = cfg["generator_seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("data.generator_seed", f"must be a non-negative integer, got {seed!r}")
    for key in ("shuffle_seq", "disk_cache"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"data.{key}", f"must be true or false, got {cfg[key]!r}")
