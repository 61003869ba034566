"""Model spec + input shape -> nn.Module, with a record of every layer's shapes.

A spec is a mapping with ``name`` and ``layers``; each item of ``layers`` is a bare layer name (``- relu``) or a
one-key mapping from a layer name to its arguments (``- conv: {out_channels: 6, kernel_size: 5}``). Input channels
and features are never written: they are propagated from the input shape.

Optional keys: ``width``, ``depth`` and ``divisor`` (the size settings applied to every channel and repeat count, see
:mod:`cnnrun.model.scaling`), ``reference_input`` and ``min_size`` (the input the model needs, checked before
building, see :func:`check_input`) and ``init_weights`` (torchvision weights to start from, see
:mod:`cnnrun.model.torchvision_weights`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from cnnrun.errors import ConfigError
from cnnrun.checks import fmt_shape
from cnnrun.layers.sequence import LayerRecord, build_layers
from cnnrun.model.scaling import Scale, scale_layers

Shape = tuple[int, ...]


class CnnModel(nn.Module):
    """The network built from a spec: ``layers`` is an ``nn.Sequential`` of the registered layers."""

    def __init__(self, name: str, layers: nn.Sequential, input_shape: Shape, output_shape: Shape,
                 records: list[LayerRecord]):
        super().__init__()
        self.name = name
        self.layers = layers
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.records = records

    def forward(self, x):
        return self.layers(x)


def _plain_spec(model: Any, input_shape: Shape, num_classes: int | None) -> dict[str, Any]:
    """Resolve the model config's interpolations (``${data.num_classes}``, ``${model.width}``) to plain values."""
    data: dict[str, Any] = {}
    if isinstance(model, DictConfig):
        root = model._get_root()
        if root is not model and isinstance(root.get("data", None), DictConfig):
            data = OmegaConf.to_container(root.data, resolve=False)
        raw = OmegaConf.to_container(model, resolve=False)
    elif isinstance(model, Mapping):
        raw = OmegaConf.to_container(OmegaConf.create(dict(model)), resolve=False)
    else:
        raise ConfigError("model", f"must be a mapping with 'name' and 'layers', got {type(model).__name__}")
    data["input_shape"] = list(input_shape)
    if num_classes is not None:
        data["num_classes"] = num_classes
    try:
        wrapper = OmegaConf.create({"model": raw, "data": data})
        return OmegaConf.to_container(wrapper.model, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError("model", f"cannot resolve the model config: {err}".split("\n")[0]) from None


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def check_input(spec: Mapping[str, Any], input_shape: Shape) -> None:
    """The input the model declares it needs, checked before any layer is built.

    ``reference_input`` ([C, *spatial], the paper's input) fixes the number of spatial dimensions; ``min_size`` (an
    int, or one per spatial dimension) is the smallest spatial size the layers accept. Both are optional.
    """
    name = spec.get("name", "model")
    ref = spec.get("reference_input")
    if ref is not None:
        if (not isinstance(ref, list) or not 2 <= len(ref) <= 4
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in ref)):
            raise ConfigError("model.reference_input", f"must be [channels, *spatial] with 1 to 3 spatial sizes, "
                                                       f"got {ref!r}")
        if len(ref) != len(input_shape):
            kinds = {2: "[channels, length] sequences", 3: "[channels, height, width] images",
                     4: "[channels, time, height, width] volumes"}
            raise ConfigError("data.input_shape", f"model {name} takes {kinds[len(ref)]} such as {ref}, got "
                                                  f"{list(input_shape)}")
    minimum = spec.get("min_size")
    if minimum is not None:
        rank = len(input_shape) - 1
        sizes = [minimum] * rank if isinstance(minimum, int) and not isinstance(minimum, bool) else minimum
        if (not isinstance(sizes, list) or len(sizes) != rank
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)):
            raise ConfigError("model.min_size", f"must be a positive integer or a list of {rank}, got {minimum!r}")
        if any(n < m for n, m in zip(input_shape[1:], sizes)):
            hint = f"; its reference input is {ref}" if ref is not None else ""
            raise ConfigError("data.input_shape", f"model {name} needs a spatial size of at least {_dims(sizes)}, "
                                                  f"got {_dims(input_shape[1:])} ({list(input_shape)}){hint}")


def build_model(model: Any, input_shape: Sequence[int], num_classes: int | None = None) -> CnnModel:
    """Build the network described by ``model`` (a mapping or DictConfig with ``name`` and ``layers``).

    ``input_shape`` excludes the batch dimension, e.g. ``(1, 32, 32)``. When ``num_classes`` is given, the last layer
    must produce exactly that many values. Raises :class:`~cnnrun.errors.ConfigError` naming the layer at fault.
    """
    if isinstance(model, ListConfig) or not isinstance(model, (Mapping, DictConfig)):
        raise ConfigError("model", "must be a mapping with 'name' and 'layers'")
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or any(s <= 0 for s in input_shape):
        raise ConfigError("data.input_shape", f"must be a list of positive sizes, got {list(input_shape)}")
    spec = _plain_spec(model, input_shape, num_classes)
    if "layers" not in spec:
        raise ConfigError("model", "has no 'layers' list")
    check_input(spec, input_shape)
    spec["layers"] = scale_layers(spec["layers"], Scale.of(spec))
    init = spec.get("init_weights")
    if init is not None:
        from cnnrun.model.torchvision_weights import check_init_weights

        init = check_init_weights(init)
    layers, out_shape, records = build_layers(spec["layers"], input_shape, "model.layers")
    if num_classes is not None and tuple(out_shape) != (num_classes,):
        top = [r for r in records if r.depth == 0][-1]
        raise ConfigError(f"{top.path} ({top.type})",
                          f"the model's output shape is {fmt_shape(out_shape)} but data.num_classes is {num_classes}; "
                          f"end the model with a layer of width {num_classes}, e.g. "
                          "'- linear: {out_features: \"${data.num_classes}\"}'")
    net = CnnModel(str(spec.get("name", "model")), layers, input_shape, out_shape, records)
    if init is not None and init["path"] is not None:
        from cnnrun.model.torchvision_weights import load_torchvision_weights

        try:
            load_torchvision_weights(net, init["path"], init["torchvision"], strict=init["strict"])
        except ConfigError as err:
            raise err.under("model.init_weights") from None
    return net
