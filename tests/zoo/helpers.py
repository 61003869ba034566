"""Zoo model specs without Hydra: the YAML file as written, with hyperparameters set, for tests that only build."""
from functools import lru_cache
from typing import Any

import torch
from omegaconf import OmegaConf

from cnnrun import build_model
from cnnrun.model.zoo import declared


_raw = lru_cache(maxsize=None)(declared)


def zoo_spec(name: str, **hyperparameters: Any) -> dict[str, Any]:
    """conf/model/<name>.yaml as a plain spec (interpolations unresolved), with top-level keys overridden."""
    spec = OmegaConf.create(_raw(name))
    for key, value in hyperparameters.items():
        OmegaConf.update(spec, key, value, merge=False)
    return OmegaConf.to_container(spec, resolve=False)


def meta_model(name: str, shape, classes: int = 10, **hyperparameters: Any):
    """The zoo model built on the meta device: shapes, records and parameter counts, nothing allocated."""
    with torch.device("meta"):
        return build_model(zoo_spec(name, **hyperparameters), tuple(shape), classes)
