"""The README's generated tables (a development tool, not part of the package): each lives between a start and an
end marker; ``tests/cli/test_readme.py`` checks that they are current.

    python -m tests.readme_tables           # print the tables
    python -m tests.readme_tables --write   # rewrite them in README.md
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
LAYER_MARKERS = ("<!-- layer-table:start -->", "<!-- layer-table:end -->")
ZOO_MARKERS = ("<!-- zoo-table:start -->", "<!-- zoo-table:end -->")


def _signature(layer) -> str:
    return ", ".join(name if p.default is inspect.Parameter.empty else f"{name}={p.default!r}"
                     for name, p in layer.arguments.items())


def layer_table() -> str:
    """Every registered layer type: its chapter section, what it does, its arguments and their defaults."""
    from cnnrun.layers.registry import layer_types

    rows = ["| layer | chapter | what it does | arguments (defaults) |", "|---|---|---|---|"]
    for name, layer in sorted(layer_types().items()):
        doc = layer.doc.replace("|", "\\|")  # a bare | would end the table cell ("same|valid", inception's branches)
        rows.append(f"| `{name}` | {layer.section or ''} | {doc} | {_signature(layer).replace('|', '/')} |")
    return "\n".join(rows)


def zoo_rows() -> list[dict[str, Any]]:
    """One row per zoo model at its reference input, summarised on the meta device (nothing allocated)."""
    import torch

    from cnnrun.model.summary import summarize
    from cnnrun.model.zoo import declared, zoo_names

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


TABLES = {LAYER_MARKERS: layer_table, ZOO_MARKERS: zoo_table}


def between(text: str, markers: tuple[str, str]) -> str:
    """What stands between the markers."""
    return text.split(markers[0], 1)[1].split(markers[1], 1)[0].strip()


def replace_between(text: str, markers: tuple[str, str], body: str) -> str:
    head, rest = text.split(markers[0], 1)
    _, tail = rest.split(markers[1], 1)
    return f"{head}{markers[0]}\n{body}\n{markers[1]}{tail}"


def main() -> None:
    text = README.read_text()
    for markers, make in TABLES.items():
        if "--write" in sys.argv:
            text = replace_between(text, markers, make())
        else:
            print(make(), end="\n\n")
    if "--write" in sys.argv:
        README.write_text(text)


if __name__ == "__main__":
    main()
