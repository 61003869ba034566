"""cnnrun: a declarative, YAML-driven experiment runner for convolutional networks.

Public API (imported lazily, so ``import cnnrun`` stays light):
    compose(overrides) -> DictConfig         the config the CLI would run with these overrides
    build_model(model, input_shape, num_classes=None) -> nn.Module
    summarize(model, input_shape, num_classes=None) -> dict
    run(cfg) -> dict                         what ``python -m cnnrun`` does; returns the final metrics
    register(name, doc=..., section=...)     decorator that adds a layer type
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from cnnrun.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "compose": "cnnrun.config",
    "build_model": "cnnrun.model.builder",
    "summarize": "cnnrun.model.summary",
    "run": "cnnrun.run",
    "register": "cnnrun.layers.registry",
    "layer_types": "cnnrun.layers.registry",
    "ConfigError": "cnnrun.errors",
    "Diverged": "cnnrun.errors",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from cnnrun.config import compose
    from cnnrun.errors import ConfigError, Diverged
    from cnnrun.layers.registry import layer_types, register
    from cnnrun.model.builder import build_model
    from cnnrun.model.summary import summarize
    from cnnrun.run import run


__getattr__ = lazy_exports(globals(), _EXPORTS)
