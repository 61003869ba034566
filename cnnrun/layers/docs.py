"""The README's table of layer types, generated from the registry so that it cannot drift.

    python -m cnnrun.layers.docs           # print the table
    python -m cnnrun.layers.docs --write   # rewrite it in README.md between the layer-table markers
"""
from __future__ import annotations

import inspect

from cnnrun.layers.registry import layer_types

START, END = "<!-- layer-table:start -->", "<!-- layer-table:end -->"


def _signature(layer) -> str:
    parts = []
    for name, p in layer.arguments.items():
        parts.append(name if p.default is inspect.Parameter.empty else f"{name}={p.default!r}")
    return ", ".join(parts)


def layer_table() -> str:
    rows = ["| layer | chapter | what it does | arguments (defaults) |", "|---|---|---|---|"]
    for name, layer in sorted(layer_types().items()):
        doc = layer.doc.replace("|", "\\|")  # a bare | would end the table cell ("same|valid", inception's branches)
        rows.append(f"| `{name}` | {layer.section or ''} | {doc} | {_signature(layer).replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    from cnnrun.readme import table_main

    table_main(START, END, layer_table)
