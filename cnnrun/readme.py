"""Generated tables in the README: a table lives between a start and an end marker, and a script rewrites it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_between(text: str, start: str, end: str, body: str) -> str:
    """``text`` with everything between the ``start`` and ``end`` markers replaced by ``body``."""
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def table_main(start: str, end: str, make_table: Callable[[], str]) -> None:
    """``--write``: rewrite the README's table; otherwise print it."""
    if "--write" in sys.argv:
        README.write_text(replace_between(README.read_text(), start, end, make_table()))
    else:
        print(make_table())
