"""The ``ebmlab`` command line: ``demo``, and the commands that later modules register."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> (help, add_arguments(parser), run(args) -> exit code). Modules listed in
# _load_commands register theirs with ``COMMANDS["name"] = (...)`` on import.
COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {}


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--quick", action="store_true", help="small sizes; under 30 s on 2 cores")
    p.add_argument("--section", action="append", default=None,
                   help="run only this section (repeatable)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the demo's tensors are small, and extra "
                   "threads only wait on each other)")


def _run_demo(args: argparse.Namespace) -> int:
    import torch

    from ebmlab.demo import run_demo

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1; got {args.threads}")
    torch.set_num_threads(args.threads)
    run_demo(args.out, quick=args.quick, sections=args.section)
    print(f"figures written to {args.out}/")
    return 0


COMMANDS["demo"] = ("reproduce the lecture's pictures on built-in data", _add_demo, _run_demo)


def _load_commands() -> None:
    # Modules that register commands on import; missing ones simply add nothing.
    import importlib

    for module in ("ebmlab.training.cli", "ebmlab.inference.cli", "ebmlab.bench_cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every registered sub-command."""
    _load_commands()
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


if __name__ == "__main__":
    sys.exit(main())
