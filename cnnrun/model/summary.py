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

_WINDOWED = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)


def _macs_of(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.modules.conv._ConvNd):
        per_out = module.in_channels // module.groups * math.prod(module.kernel_size)
        return output[0].numel() * per_out
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    return int(getattr(module, "extra_macs", lambda out: 0)(output))


def _count_macs(model: nn.Module) -> dict[int, int]:
    """MACs of every leaf module for one sample, by ``id(module)``."""
    counts: dict[int, int] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: counts.__setitem__(id(mod), _macs_of(mod, out)))
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


def _window(module: nn.Module, rank: int) -> tuple[list[int], list[int]] | None:
    """(effective kernel, stride) per spatial dimension for windowed layers, else None."""
    if isinstance(module, _WINDOWED) or hasattr(module, "kernel") and hasattr(module, "stride"):
        def per_dim(v):
            return list(v) if isinstance(v, (tuple, list)) else [v] * rank
        kernel = per_dim(getattr(module, "kernel_size", getattr(module, "kernel", 1)))
        stride = per_dim(getattr(module, "stride", 1) or kernel)
        dilation = per_dim(getattr(module, "dilation", 1))
        return [effective_kernel(k, d) for k, d in zip(kernel, dilation)], stride
    return None


def _receptive_field(module: nn.Module, rf: list[int], jump: list[int], input_sizes: Sequence[int]):
    """Update (receptive field size, jump) per spatial dimension through ``module`` (chapter 5.10)."""
    if isinstance(module, nn.Sequential):
        for child in module:
            rf, jump = _receptive_field(child, rf, jump, input_sizes)
        return rf, jump
    window = _window(module, len(rf))
    if window is not None:
        kernel, stride = window
        return [r + (k - 1) * j for r, k, j in zip(rf, kernel, jump)], [j * s for j, s in zip(jump, stride)]
    if isinstance(module, (nn.Flatten, nn.Linear)) or type(module).__name__ == "GlobalPool":
        return list(input_sizes), jump
    return rf, jump


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
            rf, jump = _receptive_field(rec.module, rf, jump, spatial)
        rows.append({
            "name": rec.path, "type": rec.type, "output_shape": list(rec.out_shape), "params": rec.params,
            "macs": layer_macs, "depth": rec.depth,
            "receptive_field": {"size": list(rf), "stride": list(jump)} if spatial else None,
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
    for col, justify in (("layer", "left"), ("type", "left"), ("output shape", "right"), ("params", "right"),
                         ("MACs", "right"), ("receptive field", "right")):
        table.add_column(col, justify=justify)
    for row in summary["layers"]:
        rf = row["receptive_field"]
        rf_text = "x".join(map(str, rf["size"])) + f" /{'x'.join(map(str, rf['stride']))}" if rf else "-"
        table.add_row("  " * row["depth"] + row["name"], row["type"], str(tuple(row["output_shape"])),
                      f"{row['params']:,}", _human(row["macs"]), rf_text)
    table.caption = (f"params {summary['total_params']:,} (trainable {summary['trainable_params']:,})  |  "
                     f"MACs {_human(summary['macs'])}  |  activations {_human(summary['activation_bytes'], 'B')}"
                     " per sample")
    table.caption_justify = "left"
    return table
