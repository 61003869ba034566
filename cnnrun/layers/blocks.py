"""Blocks: layer types built from other layers (Inception, parallel branches, residual, repeat, NIN's mlpconv,
MobileNetV2's inverted residual).

Blocks build their layer lists with :func:`cnnrun.layers.sequence.build_layers`; the records of their children
appear indented in the summary (``child_records``, paths relative to the block).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from cnnrun import checks as A
from cnnrun.layers.conv import make_conv
from cnnrun.layers.registry import get_layer_type, register
from cnnrun.layers.sequence import LayerRecord, build_layers

Shape = tuple[int, ...]


def _build(items: Any, in_shape: Shape, name: str):
    if not isinstance(items, (list, tuple)) or not items:
        raise A.ConfigError(name, f"must be a non-empty list of layers, got {items!r}")
    return build_layers(items, in_shape, name)


def _activation(name: Any, key: str, in_shape: Shape) -> nn.Module | None:
    if name in (None, "none"):
        return None
    if not isinstance(name, str):
        raise A.ConfigError(key, f"must be a layer name such as relu, or none; got {name!r}")
    try:
        return get_layer_type(name).build(in_shape, {})[0]
    except A.ConfigError as err:
        raise A.ConfigError(key, err.message) from None


class ConvUnit(nn.Module):
    """conv [-> bn] [-> activation]; named like torchvision's BasicConv2d (``conv``, ``bn``)."""

    def __init__(self, conv: nn.Module, bn: nn.Module | None, act: nn.Module | None):
        super().__init__()
        self.conv = conv
        if bn is not None:
            self.bn = bn
        if act is not None:
            self.act = act

    def forward(self, x):
        for child in self.children():
            x = child(x)
        return x


def conv_unit(layer: str, in_shape: Shape, out_channels: int, kernel_size, *, stride=1, padding="same",
              bias=True, norm="none", bn_eps=1e-5, activation="relu", groups=1):
    from cnnrun.layers.basic import BATCHNORM

    conv, out = make_conv(layer, in_shape, out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                          padding=padding, bias=bias, groups=groups)
    A.choice("norm", norm, ("none", "bn"))
    bn = BATCHNORM[len(out) - 1](out[0], eps=A.positive_float("bn_eps", bn_eps)) if norm == "bn" else None
    return ConvUnit(conv, bn, _activation(activation, "activation", out)), out


class Branches(nn.Module):
    """Runs every branch on the same input and merges by concatenating channels or adding."""

    def __init__(self, branches: Sequence[nn.Module], merge: str = "concat", names: Sequence[str] | None = None):
        super().__init__()
        self.merge = merge
        self.names = list(names or [f"branch{i + 1}" for i in range(len(branches))])
        for name, branch in zip(self.names, branches):
            self.add_module(name, branch)

    @property
    def branches(self) -> list[nn.Module]:
        return [getattr(self, n) for n in self.names]

    def forward(self, x):
        outs = [branch(x) for branch in self.branches]
        return torch.cat(outs, dim=1) if self.merge == "concat" else torch.stack(outs).sum(0)

    def extra_repr(self):
        return f"merge={self.merge}"


def _merged_shape(shapes: list[Shape], merge: str) -> Shape:
    if merge == "add":
        if len(set(shapes)) != 1:
            raise A.ConfigError("branches", f"merge: add needs equal output shapes, got "
                                            f"{', '.join(A.fmt_shape(s) for s in shapes)}")
        return shapes[0]
    if len({s[1:] for s in shapes}) != 1:
        raise A.ConfigError("branches", f"merge: concat needs equal spatial sizes, got "
                                        f"{', '.join(A.fmt_shape(s) for s in shapes)}")
    return (sum(s[0] for s in shapes), *shapes[0][1:])


@register("parallel", doc="branches (each a layer list) on the same input, merged by concat (channels) or add",
          section="5.11", nested=("branches",))
def parallel(in_shape, *, branches, merge="concat"):
    A.choice("merge", merge, ("concat", "add"))
    if not isinstance(branches, (list, tuple)) or len(branches) < 1:
        raise A.ConfigError("branches", f"must be a list of layer lists, got {branches!r}")
    modules, shapes, records = [], [], []
    for i, items in enumerate(branches):
        module, shape, recs = _build(items, in_shape, f"branches[{i}]")
        modules.append(module)
        shapes.append(shape)
        records.extend(recs)
    block = Branches(modules, merge)
    block.child_records = records
    return block, _merged_shape(shapes, merge)


@register("inception", doc="GoogLeNet Inception module: 1x1 | 1x1>3x3 | 1x1>5x5 | 3x3 maxpool>1x1, concatenated; "
                           "0 drops a reduction, pool_proj: 0 passes the pooled input (naive module)",
          section="5.8, 5.11", widths=("ch1x1", "ch3x3", "ch5x5", "ch3x3red", "ch5x5red", "pool_proj"))
def inception(in_shape, *, ch1x1, ch3x3, ch5x5, ch3x3red=0, ch5x5red=0, pool_proj=0, kernel_3x3=3, kernel_5x5=5,
              pool_kernel=3, bias=True, norm="none", bn_eps=1e-5, activation="relu"):
    A.spatial_rank("inception", in_shape, ranks=(2,))
    unit = dict(bias=bias, norm=norm, bn_eps=bn_eps, activation=activation)
    branches, names, kinds, shapes = [], [], [], []

    def chain(specs):
        layers, shape = [], in_shape
        for key, width, kernel in specs:
            width = A.positive_int(key, width, minimum=0)
            if width == 0:
                continue
            module, shape = conv_unit("inception", shape, width, kernel, **unit)
            layers.append(module)
        return layers, shape

    for name, specs, kind in (
            ("branch1", [("ch1x1", ch1x1, 1)], "1x1"),
            ("branch2", [("ch3x3red", ch3x3red, 1), ("ch3x3", ch3x3, kernel_3x3)], f"1x1 > {kernel_3x3}x{kernel_3x3}"),
            ("branch3", [("ch5x5red", ch5x5red, 1), ("ch5x5", ch5x5, kernel_5x5)], f"1x1 > {kernel_5x5}x{kernel_5x5}")):
        layers, shape = chain(specs)
        if layers:
            branches.append(nn.Sequential(*layers))
            names.append(name)
            kinds.append(kind)
            shapes.append(shape)
    from cnnrun.layers.pooling import maxpool

    pool, pooled = maxpool(in_shape, kernel_size=A.positive_int("pool_kernel", pool_kernel), stride=1,
                           padding="same")
    proj, shape = chain([("pool_proj", pool_proj, 1)]) if pool_proj else ([], pooled)
    branches.append(nn.Sequential(pool, *proj))
    names.append("branch4")
    kinds.append(f"{pool_kernel}x{pool_kernel} maxpool" + (" > 1x1" if proj else ""))
    shapes.append(shape)
    block = Branches(branches, "concat", names)
    out = _merged_shape(shapes, "concat")
    block.child_records = [LayerRecord(n, k, in_shape, s, sum(p.numel() for p in b.parameters()), b)
                           for n, k, s, b in zip(names, kinds, shapes, branches)]
    return block, out


def _projection_stride(size: int, out: int) -> int | None:
    """The smallest stride s with which a 1x1 convolution maps ``size`` positions onto ``out``: (size-1)//s + 1 = out
    (a stride-2 body with padding maps 7 onto 4, and so does a stride-2 1x1 projection); None if there is none."""
    for s in range(1, size + 1):
        if (size - 1) // s + 1 == out:
            return s
    return None


class Residual(nn.Module):
    """y = activation(body(x) + shortcut(x))."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, act: nn.Module | None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        if act is not None:
            self.act = act

    @property
    def branches(self) -> list[nn.Module]:
        return [self.body, self.shortcut]

    def forward(self, x):
        y = self.body(x) + self.shortcut(x)
        return self.act(y) if hasattr(self, "act") else y


@register("residual", doc="a layer list plus a shortcut (auto: identity, or a 1x1 projection when the shape "
                          "changes), then an optional activation", section="5.12", nested=("layers",))
def residual(in_shape, *, layers, shortcut="auto", shortcut_norm=False, activation=None):
    A.choice("shortcut", shortcut, ("auto", "identity", "conv"))
    A.boolean("shortcut_norm", shortcut_norm)
    body, out, records = _build(layers, in_shape, "layers")
    if shortcut == "identity" and out != tuple(in_shape):
        raise A.ConfigError("shortcut", f"identity needs the layers to keep the shape {A.fmt_shape(in_shape)}, "
                                        f"they give {A.fmt_shape(out)}; use shortcut: auto or conv")
    if shortcut == "conv" or (shortcut == "auto" and out != tuple(in_shape)):
        stride = [_projection_stride(i, o) for i, o in zip(in_shape[1:], out[1:])]
        if len(out) != len(in_shape) or None in stride:
            raise A.ConfigError("shortcut", f"cannot project {A.fmt_shape(in_shape)} onto {A.fmt_shape(out)} "
                                            f"with a strided 1x1 convolution")
        path, _ = conv_unit("residual", in_shape, out[0], 1, stride=stride, padding=0, bias=not shortcut_norm,
                            norm="bn" if shortcut_norm else "none", activation=None)
    else:
        path = nn.Identity()
    block = Residual(body, path, _activation(activation, "activation", out))
    block.child_records = records
    return block, out


def _scaled(value: Any, factor: float) -> Any:
    """``value * factor`` for a number or a list of numbers; whole results of integer inputs stay integers."""
    if isinstance(value, (list, tuple)):
        return [_scaled(v, factor) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value  # left to the layer's own check
    result = value * factor
    return int(result) if isinstance(value, int) and float(result).is_integer() else result


def _grown(items: Sequence[Any], growth: dict[str, float], copy: int) -> list[Any]:
    """The layer list of copy ``copy``: every written argument named in ``growth`` times factor ** copy."""
    out = []
    for item in items:
        if isinstance(item, Mapping) and len(item) == 1:
            (name, args), = item.items()
            if isinstance(args, Mapping) and any(k in args for k in growth):
                args = {k: _scaled(v, growth[k] ** copy) if k in growth else v for k, v in args.items()}
                item = {name: args}
        out.append(item)
    return out


def _check_growth(growth: Any, layers: Any) -> dict[str, float]:
    if growth is None:
        return {}
    if not isinstance(growth, Mapping) or not growth:
        raise A.ConfigError("growth", f"must be a mapping from an argument name to a factor, e.g. {{dilation: 2}}, "
                                      f"got {growth!r}")
    written = {k for item in (layers if isinstance(layers, (list, tuple)) else [])
               if isinstance(item, Mapping) and len(item) == 1
               for args in item.values() if isinstance(args, Mapping) for k in args}
    for key, factor in growth.items():
        A.positive_float(f"growth.{key}", factor)
        if key not in written:
            raise A.ConfigError("growth", f"no layer in 'layers' writes the argument '{key}' (only written "
                                          f"arguments grow)")
    return dict(growth)


@register("repeat", doc="a layer list repeated n times (the shape flows through the copies; n: 0 is the identity); "
                        "first: another layer list for copy 0 (a stage's strided first block); growth: "
                        "{dilation: 2} multiplies a written argument by 2^i in copy i", nested=("layers", "first"),
          repeats=("n",))
def repeat(in_shape, *, n, layers, first=None, growth=None):
    n = A.positive_int("n", n, minimum=0)
    growth = _check_growth(growth, layers)
    modules, records, shape = [], [], tuple(in_shape)
    if n == 0:  # still check the list, without allocating or drawing random numbers
        with torch.device("meta"):
            _build(first if first is not None else layers, shape, "[0]")
    for i in range(n):
        items = first if i == 0 and first is not None else layers
        module, shape, recs = _build(_grown(items, growth, i) if growth else items, shape, f"[{i}]")
        modules.append(module)
        records.extend(recs)
    block = nn.Sequential(*modules)
    block.child_records = records
    return block, shape


class InvertedResidual(nn.Module):
    """MobileNetV2's block: ``conv`` (expand, depthwise, project) plus the input when ``use_shortcut``."""

    def __init__(self, conv: nn.Sequential, use_shortcut: bool):
        super().__init__()
        self.conv = conv
        self.use_shortcut = use_shortcut

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.use_shortcut else y

    def extra_repr(self):
        return f"shortcut={self.use_shortcut}"


@register("inverted_residual", doc="MobileNetV2 block: 1x1 expansion to round(C*expansion) channels (none for 1), "
                                   "k x k depthwise, linear 1x1 projection, each with batch norm; an identity "
                                   "shortcut when stride is 1 and the channels match", section="5.13")
def inverted_residual(in_shape, *, out_channels, expansion=6, kernel_size=3, stride=1, activation="relu6",
                      bn_eps=1e-5):
    rank = A.spatial_rank("inverted_residual", in_shape)
    out_channels = A.positive_int("out_channels", out_channels)
    ratio = A.positive_float("expansion", expansion)
    hidden = int(round(in_shape[0] * ratio))
    if hidden < 1:
        raise A.ConfigError("expansion", f"gives {in_shape[0]} * {expansion} < 1 hidden channels")
    kernel = A.int_tuple("kernel_size", kernel_size, rank)
    strides = A.int_tuple("stride", stride, rank)
    unit = dict(bias=False, norm="bn", bn_eps=bn_eps)
    units, records, shape = [], [], tuple(in_shape)
    steps = [] if ratio == 1 else [("expand", "1x1", hidden, 1, 1, 1, activation)]
    steps += [("depthwise", "x".join(map(str, kernel)) + " depthwise", hidden, kernel, strides, hidden, activation),
              ("project", "1x1 linear", out_channels, 1, 1, 1, None)]
    for name, kind, width, k, s, groups, act in steps:
        pad = [(kk - 1) // 2 for kk in A.int_tuple("kernel_size", k, rank)]  # torchvision's symmetric padding
        module, out = conv_unit("inverted_residual", shape, width, k, stride=s, padding=pad, groups=groups,
                                activation=act, **unit)
        records.append(LayerRecord(name, kind, shape, out, sum(p.numel() for p in module.parameters()), module))
        units.append(module)
        shape = out
    block = InvertedResidual(nn.Sequential(*units), use_shortcut=set(strides) == {1} and shape == tuple(in_shape))
    block.child_records = records
    return block, shape


@register("mlpconv", doc="NIN's micro network: a k x k convolution then 1x1 convolutions, each followed by an "
                         "activation; out_channels lists the widths", section="5.8")
def mlpconv(in_shape, *, out_channels, kernel_size=3, stride=1, padding=0, activation="relu", norm="none"):
    A.spatial_rank("mlpconv", in_shape)
    widths = out_channels if isinstance(out_channels, (list, tuple)) else None
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise A.ConfigError("out_channels", f"must be a list of positive widths, e.g. [192, 160, 96], got "
                                            f"{out_channels!r}")
    units, shape = [], tuple(in_shape)
    for i, width in enumerate(widths):
        first = i == 0
        unit, shape = conv_unit("mlpconv", shape, width, kernel_size if first else 1, stride=stride if first else 1,
                                padding=padding if first else 0, norm=norm, activation=activation)
        units.append(unit)
    return nn.Sequential(*units), shape
