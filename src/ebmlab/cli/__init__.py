"""The ``ebmlab`` command line: ``demo``, ``train`` and ``infer``, listed in ``COMMANDS``.

A new command is one module under ``ebmlab.cli`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> exit code``, plus one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from ebmlab import __version__
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
    parser.add_argument("--version", action="version", version=f"ebmlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


class _Stderr(logging.StreamHandler):
    """A handler writing to the current ``sys.stderr`` (looked up at each message)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _setup_logging() -> None:
    """Send the commands' messages (resume, warnings) to stderr as ``ebmlab: ...`` lines."""
    logger = logging.getLogger("ebmlab.cli")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("ebmlab: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ebmlab`` command."""
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        return COMMANDS[args.command][2](args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"ebmlab {args.command}: error: {err}", file=sys.stderr)
        return 2
