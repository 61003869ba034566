"""The layer registry: a layer type is a name bound to a builder function.

A builder takes the running input shape (without the batch dimension) and keyword-only arguments named as in
``torch.nn``, checks them, and returns ``(module, output_shape)``. Register one with :func:`register`::

    @register("my_conv", doc="what it does", section="5.4")
    def my_conv(in_shape, *, out_channels, kernel_size=3):
        ...
        return module, out_shape

The registry checks argument names against the builder's signature, so builders only check values. It also knows
which arguments are channel counts (``widths``: ``out_channels`` and ``out_features`` unless a builder names others)
and which hold layer lists (``nested``, for blocks): the model builder scales the former by the model's ``width``
and looks inside the latter (:mod:`cnnrun.model.scaling`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from cnnrun.errors import ConfigError, did_you_mean

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerType:
    name: str
    builder: Callable[..., tuple[Any, Shape]]
    doc: str
    section: str | None
    arguments: dict[str, inspect.Parameter]
    widths: tuple[str, ...] = ()  # arguments that are channel counts (an int or a list of ints)
    nested: tuple[str, ...] = ()  # arguments that hold a layer list (or, for parallel, a list of layer lists)

    @property
    def required(self) -> list[str]:
        return [n for n, p in self.arguments.items() if p.default is inspect.Parameter.empty]

    def build(self, in_shape: Shape, args: dict[str, Any]):
        """Check argument names, then call the builder. Raises ConfigError naming the argument."""
        for key in args:
            if key not in self.arguments:
                valid = ", ".join(self.arguments) or "none"
                raise ConfigError(None, f"unknown argument '{key}'{did_you_mean(key, self.arguments)} "
                                        f"(valid arguments: {valid})")
        missing = [n for n in self.required if n not in args]
        if missing:
            raise ConfigError(None, "missing required argument " + ", ".join(f"'{m}'" for m in missing))
        return self.builder(tuple(in_shape), **args)


_REGISTRY: dict[str, LayerType] = {}


WIDTH_ARGUMENTS = ("out_channels", "out_features")


def register(name: str, *, doc: str = "", section: str | None = None, widths: tuple[str, ...] | None = None,
             nested: tuple[str, ...] = ()):
    """Decorator that registers a layer builder under ``name`` (a duplicate name is an error).

    ``widths`` names the arguments that are channel counts (default: those of ``out_channels`` and ``out_features``
    that the builder takes); ``nested`` the arguments that hold layer lists.
    """

    def decorator(fn: Callable) -> Callable:
        if name in _REGISTRY:
            other = _REGISTRY[name].builder
            raise ValueError(f"layer type '{name}' is already registered by {other.__module__}.{other.__qualname__}")
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise TypeError(f"builder for '{name}' must take the input shape as its first positional argument")
        arguments = {p.name: p for p in params[1:] if p.kind is p.KEYWORD_ONLY}
        scaled = tuple(a for a in WIDTH_ARGUMENTS if a in arguments) if widths is None else tuple(widths)
        unknown = [a for a in (*scaled, *nested) if a not in arguments]
        if unknown:
            raise TypeError(f"builder for '{name}' takes no argument {', '.join(unknown)} (named in widths/nested)")
        _REGISTRY[name] = LayerType(name, fn, doc or (fn.__doc__ or "").strip().split("\n")[0], section, arguments,
                                    scaled, tuple(nested))
        return fn

    return decorator


def layer_types() -> dict[str, LayerType]:
    """All registered layer types, by name."""
    _load_builtin()
    return dict(_REGISTRY)


def get_layer_type(name: str) -> LayerType:
    """The layer type called ``name``; a ConfigError with close matches and the known names otherwise."""
    _load_builtin()
    if not isinstance(name, str) or name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(None, f"unknown layer type '{name}'{did_you_mean(name, _REGISTRY)} (known types: {known})")
    return _REGISTRY[name]


def _load_builtin() -> None:
    # Importing the package's layer modules registers the built-in types.
    import cnnrun.layers  # noqa: F401
