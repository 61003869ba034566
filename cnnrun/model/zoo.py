"""The model zoo: every config in ``conf/model/``, and the README's zoo table generated from :func:`summarize` so
that it cannot drift.

    python -m cnnrun.model.zoo           # print the table
    python -m cnnrun.model.zoo --write   # rewrite it in README.md between the zoo-table markers

Each zoo model declares ``chapter`` (its section of the reference chapter), ``reference_input`` and
``reference_classes`` (the paper's input and classes: the table's parameters and MACs are at that size) and
``min_size`` (the smallest spatial size it builds for). The table is computed on PyTorch's meta device: shapes,
parameter counts and MACs without allocating or running anything.
"""
from __future__ import annotations

from typing import Any

from cnnrun.config import CONFIG_DIR

START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def zoo_names() -> list[str]:
    """The names of the model configs shipped in ``conf/model/``."""
    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def shape_override(shape) -> str:
    """A shape as a Hydra override value: ``[3,224,224]``."""
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def declared(name: str) -> dict[str, Any]:
    """The keys of ``conf/model/<name>.yaml`` as written (interpolations unresolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml"), resolve=False)


def zoo_rows() -> list[dict[str, Any]]:
    """One row per zoo model: name, description, chapter, reference input and classes, parameters, MACs."""
    import torch

    from cnnrun.model.summary import summarize

    rows = []
    for name in zoo_names():
        spec = declared(name)  # the builder resolves ${model.*} and ${data.num_classes} itself
        shape, classes = list(spec["reference_input"]), int(spec["reference_classes"])
        with torch.device("meta"):
            summary = summarize(spec, shape, classes)
        rows.append({"name": name, "description": spec.get("description", ""), "chapter": spec.get("chapter", ""),
                     "input": shape, "classes": classes, "params": summary["total_params"], "macs": summary["macs"]})
    return rows


def zoo_table() -> str:
    from cnnrun.model.summary import _human

    lines = ["| model | what it is | chapter | reference input | parameters | MACs |", "|---|---|---|---|---:|---:|"]
    for row in zoo_rows():
        size = "x".join(map(str, row["input"]))
        lines.append(f"| `{row['name']}` | {row['description']} | {row['chapter']} | {size}, {row['classes']} "
                     f"classes | {row['params']:,} | {_human(row['macs'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from cnnrun.readme import table_main

    table_main(START, END, zoo_table)
