"""The layer registry: a layer type is a name bound to a builder function.

A builder takes the running input shape (without the batch dimension) and keyword-only arguments named as in
``torch.nn``, checks their values, and returns ``(module, output_shape)``. Register one with :func:`register`::

    @register("my_conv", doc="what it does", section="5.4")
    def my_conv(in_shape, *, out_channels, kernel_size=3):
        ...
        return module, out_shape

The registry (:data:`LAYERS`, a :class:`cnnrun.registry.Registry`) checks argument names against the builder's
signature, so builders only check values. It also knows which arguments are channel counts (``widths``:
``out_channels`` and ``out_features`` unless a builder names others), which are repeat counts (``repeats``) and which
hold layer lists (``nested``, for blocks): the model builder scales the first by the model's ``width``, the second by
its ``depth`` and looks inside the last (:mod:`cnnrun.model.scaling`).
"""
from __future__ import annotations

from typing import Any, Callable

from cnnrun.registry import Entry, Registry

Shape = tuple[int, ...]

LAYERS = Registry("layer type", inputs=1, inputs_doc="the input shape")
# a registered layer type: .build(in_shape, args), .arguments, .doc, .section, .widths, .repeats, .nested
LayerType = Entry

WIDTH_ARGUMENTS = ("out_channels", "out_features")


def register(name: str, *, doc: str = "", section: str | None = None, widths: tuple[str, ...] | None = None,
             nested: tuple[str, ...] = (), repeats: tuple[str, ...] = ()):
    """Decorator that registers a layer builder under ``name`` (a duplicate name is an error).

    ``doc`` is its line in the README's layer table (default: the first line of the docstring), ``section`` the
    reference chapter's section; ``widths`` names the arguments that are channel counts (default: those of
    ``out_channels`` and ``out_features`` that the builder takes), ``repeats`` those that are repeat counts (the
    model's depth scales them), ``nested`` those that hold layer lists.
    """

    def decorator(fn: Callable[..., tuple[Any, Shape]]) -> Callable[..., tuple[Any, Shape]]:
        arguments = Entry(LAYERS, name, fn, {}).arguments  # the signature as the registry reads it
        scaled = tuple(a for a in WIDTH_ARGUMENTS if a in arguments) if widths is None else tuple(widths)
        unknown = [a for a in (*scaled, *repeats, *nested) if a not in arguments]
        if unknown:
            raise TypeError(f"builder for '{name}' takes no argument {', '.join(unknown)} (named in "
                            f"widths/repeats/nested)")
        first_line = (fn.__doc__ or "").strip().split("\n")[0]
        return LAYERS.register(name, fn, doc=doc or first_line, section=section, widths=scaled,
                               repeats=tuple(repeats), nested=tuple(nested))

    return decorator


def layer_types() -> dict[str, LayerType]:
    """All registered layer types, by name."""
    _load_builtin()
    return {name: LAYERS.get(name) for name in LAYERS}


def get_layer_type(name: str) -> LayerType:
    """The layer type called ``name``; a ConfigError with close matches and the known names otherwise."""
    _load_builtin()
    return LAYERS.get(name)


def _load_builtin() -> None:
    # Importing the package's layer modules registers the built-in types (this module is imported by them).
    import cnnrun.layers  # noqa: F401
