"""The ``ebmlab`` command line: ``demo``, ``train`` and ``infer``, listed in ``COMMANDS``.

A new command is one module under ``ebmlab.cli`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> exit code``, plus one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ebmlab.cli import demo, infer, train

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> (help, add_arguments(parser), run(args) -> exit code)
COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "demo": (demo.HELP, demo.add_arguments, demo.run),
    "train": (train.HELP, train.add_arguments, train.run),
    "infer": (infer.HELP, infer.add_arguments, infer.run),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command of ``COMMANDS``."""
    parser = argparse.ArgumentParser(prog="ebmlab", description="Energy-Based Models on PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ebmlab`` command."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"ebmlab {args.command}: error: {err}", file=sys.stderr)
        return 2
