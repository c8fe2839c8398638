"""Shared by the commands: the ``--threads`` option (each command keeps its own default)."""

from __future__ import annotations

import argparse

__all__ = ["add_threads", "set_threads"]


def add_threads(parser: argparse.ArgumentParser, default: int | None, help_text: str) -> None:
    """Add ``--threads`` (torch CPU threads) to a command's parser."""
    parser.add_argument("--threads", type=int, default=default, help=help_text)


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (``None``: leave torch's choice).

    Raises:
        ValueError: ``--threads`` is below 1.
    """
    if args.threads is None:
        return
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1; got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
