"""A model's size settings, applied by the builder to its whole layer list (as ultralytics' ``scales``), so that a
model file states its architecture at reference size:

- ``width`` multiplies every channel count: the arguments that each layer type names as widths (``out_channels``,
  ``out_features``, Inception's ``ch1x1`` ...), rounded half up, at least 1 (0, "no branch", stays 0). With
  ``divisor`` > 1 a count is rounded to a multiple of the divisor, never below it nor 10% under the product
  (MobileNet's ``make_divisible``).
- ``depth`` multiplies every ``repeat``'s ``n``: ceil(n * depth), at least 1.
- The model's output (the last channel count of its last layer that has one: the classes) is never scaled. A layer
  with ``scale: false`` keeps its numbers; with ``scale: up`` it follows widths above 1 only (MobileNetV2's last
  1x1 layer keeps 1280 channels for narrower networks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from cnnrun.errors import ConfigError
from cnnrun.layers.registry import get_layer_type

SCALE_MODES = (True, False, "up")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ConfigError(name, f"must be a positive number, got {value!r}")
    return float(value)


def channels(base: int, width: float = 1.0, divisor: int = 1) -> int:
    """``base`` channels at ``width``: rounded half up, at least 1; with ``divisor`` > 1, the nearest multiple of
    ``divisor``, never below ``divisor`` nor below 90% of ``base * width`` (MobileNet's ``make_divisible``)."""
    value = base * width
    if divisor == 1:
        return max(1, math.floor(value + 0.5))
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def repeats(base: int, depth: float = 1.0) -> int:
    """``base`` repeats at ``depth``: ceil(base * depth), at least 1 (0 stays 0: a repeat switched off; a negative
    count is left for the layer's own check)."""
    if base <= 0:
        return base
    return max(1, math.ceil(round(base * depth, 9)))


@dataclass(frozen=True)
class Scale:
    """The model-level size settings (``model.width``, ``model.depth``, ``model.divisor``)."""

    width: float = 1.0
    depth: float = 1.0
    divisor: int = 1

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> "Scale":
        """The settings of a model spec (each optional), checked."""
        width = _number("model.width", spec.get("width", 1.0))
        depth = _number("model.depth", spec.get("depth", 1.0))
        divisor = spec.get("divisor", 1)
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
            raise ConfigError("model.divisor", f"must be a positive integer, got {divisor!r}")
        return cls(width, depth, divisor)


def _width(value: Any, width: float, divisor: int, keep_last: bool) -> Any:
    """A width argument scaled: an int, or a list of ints (NIN's mlpconv); anything else is left to the layer's
    own check. ``keep_last`` keeps the last count (the model's output)."""
    if isinstance(value, (list, tuple)):
        last = len(value) - 1
        return [_width(v, width, divisor, keep_last and i == last) for i, v in enumerate(value)]
    if keep_last or isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return value
    return channels(value, width, divisor)


def _output_index(items: Sequence[Any]) -> int | None:
    """The position of the last layer that has a width argument: the model's output layer."""
    found = None
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and len(item) == 1:
            (name, args), = item.items()
            try:
                widths = get_layer_type(name).widths
            except ConfigError:
                continue  # the builder reports an unknown layer type with its path
            if isinstance(args, Mapping) and any(a in args for a in widths):
                found = i
    return found


def scale_layers(items: Any, scale: Scale, prefix: str = "model.layers", top: bool = True) -> Any:
    """A copy of the layer list with ``scale`` applied (see the module's doc); ``scale:`` keys are removed."""
    if not isinstance(items, (list, tuple)):
        return items  # the builder reports what is wrong with it
    output = _output_index(items) if top else None
    return [_scale_item(item, scale, f"{prefix}[{i}]", i == output) for i, item in enumerate(items)]


def _scale_item(item: Any, scale: Scale, path: str, is_output: bool) -> Any:
    if not (isinstance(item, Mapping) and len(item) == 1):
        return item
    (name, args), = item.items()
    if not isinstance(args, Mapping):
        return item
    args = dict(args)
    mode = args.pop("scale", True)
    if mode not in SCALE_MODES or (mode != "up" and not isinstance(mode, bool)):
        raise ConfigError(f"{path} ({name}).scale", f"must be true, false or up, got {mode!r}")
    try:
        layer = get_layer_type(name)
    except ConfigError:
        return {name: args}
    width = {True: scale.width, "up": max(scale.width, 1.0), False: 1.0}[mode]
    divisor = scale.divisor if mode is not False else 1
    present = [a for a in layer.widths if a in args]
    for j, key in enumerate(present):
        args[key] = _width(args[key], width, divisor, keep_last=is_output and j == len(present) - 1)
    for key in layer.repeats if mode is not False else ():
        if isinstance(args.get(key), int) and not isinstance(args[key], bool):
            args[key] = repeats(args[key], scale.depth)
    for key in layer.nested:
        value = args.get(key)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
            args[key] = [scale_layers(v, scale, f"{path}.{key}[{b}]", top=False) for b, v in enumerate(value)]
        elif value is not None:
            args[key] = scale_layers(value, scale, f"{path}.{key}", top=False)
    return {name: args}
