"""``ebmlab demo``: reproduce the lecture's pictures on built-in data."""

from __future__ import annotations

import argparse
from pathlib import Path

from ebmlab.cli._common import add_threads, set_threads

__all__ = ["HELP", "add_arguments", "run"]

HELP = "reproduce the lecture's pictures on built-in data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``ebmlab demo``."""
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--quick", action="store_true", help="small sizes; under 30 s on 2 cores")
    p.add_argument("--section", action="append", default=None,
                   help="run only this section (repeatable)")
    add_threads(p, 1, "torch CPU threads (default 1: the demo's tensors are small, and extra "
                "threads only wait on each other)")


def run(args: argparse.Namespace) -> int:
    """Run ``ebmlab demo``; return the exit code."""
    from ebmlab.demo import run_demo  # the demo draws: matplotlib is imported only here

    set_threads(args)
    run_demo(args.out, quick=args.quick, sections=args.section)
    print(f"figures written to {args.out}/")
    return 0
