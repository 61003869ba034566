"""``python -m cnnrun.report <sweep_dir>``: (re)build a sweep's comparison report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from cnnrun import report


def main(argv: Sequence[str] | None = None) -> int:
    """Build the report of the sweep folder named on the command line and print its markdown table; 2 when the
    folder does not exist."""
    parser = argparse.ArgumentParser(prog="python -m cnnrun.report",
                                     description=report.__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="a sweep folder (outputs/sweeps/<time>_<id>)")
    parser.add_argument("--no-figure", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir():
        print(f"error: sweep_dir: {sweep_dir} is not a folder", file=sys.stderr)
        return 2
    out = report.build_report(sweep_dir, figure=not args.no_figure, warn=True)
    print(out["md"].read_text())
    print("written: " + ", ".join(str(p) for p in out.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
