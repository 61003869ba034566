"""Packages whose public names load on first use: ``import cnnrun`` and ``import cnnrun.model`` stay light, so that
the config checks run before torch is imported."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(namespace: dict[str, Any], exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the module whose globals are ``namespace``: each name of ``exports`` (name ->
    the module defining it) is imported when first asked for, then kept in ``namespace``."""
    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")

    return __getattr__
