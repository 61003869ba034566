"""A layer list -> ``nn.Sequential``, propagating the shape and recording what every layer does to it.

A list item is a bare layer name (``- relu``) or a one-key mapping from a layer name to its arguments
(``- conv: {out_channels: 6, kernel_size: 5}``). Blocks (``residual``, ``repeat``, ``parallel``) build their own
layer lists with :func:`build_layers`; their children's records appear indented under them (``child_records``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from torch import nn

from cnnrun.errors import ConfigError
from cnnrun.layers.registry import get_layer_type

Shape = tuple[int, ...]


@dataclass
class LayerRecord:
    """What one layer does to the shape: its config path, type, shapes and parameter count."""

    path: str
    type: str
    in_shape: Shape
    out_shape: Shape
    params: int
    module: nn.Module = field(repr=False)
    depth: int = 0


def parse_item(item: Any, path: str) -> tuple[str, dict[str, Any]]:
    """A layer item -> (type name, arguments)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping) and len(item) == 1:
        (name, args), = item.items()
        if args is None:
            return name, {}
        if isinstance(args, Mapping):
            return name, dict(args)
        raise ConfigError(f"{path} ({name})", f"arguments must be a mapping such as {{out_channels: 16}}, "
                                              f"got {args!r}")
    raise ConfigError(path, "a layer must be a layer name (- relu) or a one-key mapping from a layer name to its "
                            f"arguments (- conv: {{out_channels: 6, kernel_size: 5}}), got {item!r}")


def build_layers(items: Sequence[Any], in_shape: Shape, prefix: str, depth: int = 0
                 ) -> tuple[nn.Sequential, Shape, list[LayerRecord]]:
    """Build a layer list, propagating the shape; errors are located at ``prefix[i] (type)``."""
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(prefix, "must be a non-empty list of layers")
    modules, records, shape = [], [], tuple(in_shape)
    for i, item in enumerate(items):
        path = f"{prefix}[{i}]"
        name, args = parse_item(item, path)
        where = f"{path} ({name})"
        try:
            module, out_shape = get_layer_type(name).build(shape, args)
        except ConfigError as err:
            raise err.under(where) from None
        params = sum(p.numel() for p in module.parameters())
        records.append(LayerRecord(path, name, shape, tuple(out_shape), params, module, depth))
        for child in getattr(module, "child_records", []):  # a block's layers, indented under it
            sep = "" if child.path.startswith("[") else "."
            records.append(LayerRecord(f"{path}.{name}{sep}{child.path}", child.type, child.in_shape,
                                       child.out_shape, child.params, child.module, depth + 1 + child.depth))
        modules.append(module)
        shape = tuple(out_shape)
    return nn.Sequential(*modules), shape, records
