"""Per-layer summary: output shape, parameters, multiply-accumulates and receptive field (chapter 5.10, 5.19).

MACs count one multiply-accumulate per weight use in convolutions and fully connected layers (the convention of
torchvision's and most papers' "FLOPs" tables, which are really MACs); norms, activations and pooling count 0.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from cnnrun.layers.padding import effective_kernel
from cnnrun.model.builder import CnnModel, build_model


def _macs_of(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):  # each input position spreads over a kernel window
        per_in = module.out_channels // module.groups * math.prod(module.kernel_size)
        return inputs[0][0].numel() * per_in
    if isinstance(module, nn.modules.conv._ConvNd):
        per_out = module.in_channels // module.groups * math.prod(module.kernel_size)
        return output[0].numel() * per_out
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    return int(getattr(module, "extra_macs", lambda out: 0)(output))


def _count_macs(model: nn.Module) -> dict[int, int]:
    """MACs of every leaf module for one sample, by ``id(module)``."""
    counts: dict[int, int] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: counts.__setitem__(id(mod), _macs_of(mod, inp, out)))
             for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return counts


def _per_dim(value, rank: int) -> list:
    values = list(value) if isinstance(value, (tuple, list)) else [value] * rank
    return values[-rank:]


def _window(module: nn.Module, rank: int) -> tuple[list[int], list[int]] | None:
    """(effective kernel, stride) per spatial dimension for windowed layers, else None."""
    kernel = getattr(module, "kernel_size", getattr(module, "kernel", None))
    if kernel is None or not hasattr(module, "stride"):
        return None
    kernel = _per_dim(kernel, rank)
    stride = _per_dim(module.stride or kernel, rank)
    dilation = _per_dim(getattr(module, "dilation", 1), rank)
    return [effective_kernel(k, d) for k, d in zip(kernel, dilation)], stride


def _receptive_field(module: nn.Module, rf: list[float], jump: list[float]) -> tuple[list[float], list[float]]:
    """Update (receptive field size, jump) per spatial dimension through ``module`` (chapter 5.10).

    Blocks with ``branches`` take the widest branch; containers compose their children in order; a transposed
    convolution or an upsampling divides the jump by its stride.
    """
    rank = len(rf)
    branches = getattr(module, "branches", None)
    if isinstance(branches, (list, nn.ModuleList)):
        results = [_receptive_field(b, rf, jump) for b in branches]
        return [max(r[0][i] for r in results) for i in range(rank)], results[0][1]
    if isinstance(module, nn.Upsample):
        scale = _per_dim(module.scale_factor, rank)
        return rf, [j / s for j, s in zip(jump, scale)]
    window = _window(module, rank)
    if window is not None:
        kernel, stride = window
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            jump = [j / s for j, s in zip(jump, stride)]
            return [r + (k - 1) * j for r, k, j in zip(rf, kernel, jump)], jump
        return [r + (k - 1) * j for r, k, j in zip(rf, kernel, jump)], [j * s for j, s in zip(jump, stride)]
    for child in module.children():
        rf, jump = _receptive_field(child, rf, jump)
    return rf, jump


def _number(v: float):
    return int(v) if float(v).is_integer() else round(v, 3)


def summarize(model: Any, input_shape: Sequence[int], num_classes: int | None = None) -> dict[str, Any]:
    """Per-layer table and totals of the model built from ``model`` (a spec, or a built :class:`CnnModel`).

    Returns ``{name, input_shape, output_shape, total_params, trainable_params, macs, activation_bytes,
    layers: [{name, type, output_shape, params, macs, receptive_field: {size, stride}, depth}]}``.
    """
    net = model if isinstance(model, CnnModel) else build_model(model, input_shape, num_classes)
    macs = _count_macs(net)
    spatial = list(net.input_shape[1:])
    rf, jump = [1] * len(spatial), [1] * len(spatial)
    rows = []
    for rec in net.records:
        layer_macs = sum(macs.get(id(m), 0) for m in rec.module.modules())
        if rec.depth == 0 and spatial:
            if len(rec.out_shape) == 1:  # flat outputs (flatten, global pooling, linear) see the whole input
                rf = list(spatial)
            else:
                rf, jump = _receptive_field(rec.module, rf, jump)
        rows.append({
            "name": rec.path, "type": rec.type, "output_shape": list(rec.out_shape), "params": rec.params,
            "macs": layer_macs, "depth": rec.depth,
            "receptive_field": ({"size": [_number(v) for v in rf], "stride": [_number(v) for v in jump]}
                                if spatial and rec.depth == 0 else None),
        })
    top = [r for r in net.records if r.depth == 0]
    return {
        "name": net.name,
        "input_shape": list(net.input_shape),
        "output_shape": list(net.output_shape),
        "total_params": sum(p.numel() for p in net.parameters()),
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "macs": sum(macs.values()),
        "activation_bytes": 4 * sum(math.prod(r.out_shape) for r in top),
        "layers": rows,
    }


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}{unit}" if suffix else f"{int(n)}{unit}"
        n /= 1000
    return f"{n:.3g}P{unit}"


def render_summary(summary: dict[str, Any]):
    """A rich renderable: one row per layer (nested blocks indented), then the totals."""
    from rich.table import Table

    table = Table(title=f"{summary['name']}  input {tuple(summary['input_shape'])}", title_justify="left")
    for col, justify in (("layer (model.)", "left"), ("type", "left"), ("output shape", "right"), ("params", "right"),
                         ("MACs", "right"), ("receptive field", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    for row in summary["layers"]:
        rf = row["receptive_field"]
        rf_text = "x".join(map(str, rf["size"])) + f" /{'x'.join(map(str, rf['stride']))}" if rf else "-"
        table.add_row("  " * row["depth"] + row["name"].removeprefix("model."), row["type"], str(tuple(row["output_shape"])),
                      f"{row['params']:,}", _human(row["macs"]), rf_text)
    table.caption = (f"params {summary['total_params']:,} (trainable {summary['trainable_params']:,})  |  "
                     f"MACs {_human(summary['macs'])}  |  activations {_human(summary['activation_bytes'], 'B')}"
                     " per sample")
    table.caption_justify = "left"
    return table
