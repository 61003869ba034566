"""What a run writes into its folder, and how it prints: shared by every mode. Every file goes through
:func:`cnnrun.atomic.atomic_write` (crash-safe); only rank 0 of a distributed run writes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cnnrun.atomic import write_text
from cnnrun.distributed import is_rank_zero


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically (a reader never sees half a file); rank 0 only."""
    if is_rank_zero():
        write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_config(run_dir: Path, plain: dict[str, Any]) -> None:
    """The resolved config, as YAML (``config.yaml``), atomically; rank 0 only."""
    if is_rank_zero():
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain)))


def print_summary(summary: dict[str, Any]) -> None:
    if not is_rank_zero():
        return
    from rich.console import Console

    from cnnrun.model import render_summary

    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough for nested block paths
        console = Console(width=140)
    console.print(render_summary(summary))


def flat_hparams(plain: dict[str, Any]) -> dict[str, Any]:
    """Flat hyperparameters for TensorBoard's HPARAMS tab (the layer list and data statistics left out). ``method``
    names the generalization methods (``augment+weight_decay``, ``baseline``); like every null value, it is left
    out when no method is chosen."""
    from cnnrun.generalization import method_name

    method = method_name(plain)
    out: dict[str, Any] = {**({"method": method} if method else {}), "seed": plain["seed"]}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("layers", "stats", "description"):
                    walk(f"{prefix}.{k}", v)
        elif isinstance(node, (int, float, str, bool)):
            out[prefix] = node
        elif node is not None:
            out[prefix] = str(node)

    for group in ("model", "data", "optim", "loss", "regularization", "generalization", "sched", "trainer"):
        walk(group, plain.get(group, {}))
    return out
