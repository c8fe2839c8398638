"""Shared by the commands: ``--device`` and ``--threads``, "did you mean", atomic text writes."""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = [
    "add_device",
    "add_threads",
    "set_threads",
    "resolve_device",
    "did_you_mean",
    "write_text_atomic",
]

THREADS_HELP = (
    "torch CPU threads (default 1 on the CPU: ebmlab's models are small and extra threads only "
    "wait on each other; results are bit-identical for a fixed thread count)"
)


def add_device(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (``cpu``, ``cuda``, ``cuda:N``) to a command's parser."""
    parser.add_argument("--device", default="cpu",
                        help="where to run: cpu (default), cuda or cuda:N")


def add_threads(parser: argparse.ArgumentParser, default: int | None = 1,
                help_text: str = THREADS_HELP) -> None:
    """Add ``--threads`` (torch CPU threads) to a command's parser.

    ``default=None`` means "1 on the CPU, torch's choice on a GPU" (see :func:`set_threads`).
    """
    parser.add_argument("--threads", type=int, default=default, help=help_text)


def set_threads(args: argparse.Namespace, device: torch.device | None = None) -> None:
    """Apply ``--threads``; when it is not given: 1 on the CPU, torch's choice on a GPU.

    Raises:
        ValueError: ``--threads`` is below 1.
    """
    if args.threads is None:
        if device is None or device.type == "cpu":
            torch.set_num_threads(1)
        return
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1; got {args.threads}")
    torch.set_num_threads(args.threads)


def resolve_device(name: str) -> torch.device:
    """Check ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` on a machine that has it.

    Under torchrun, ``cuda`` means the process's own GPU (``cuda:LOCAL_RANK``).

    Raises:
        ValueError: an unknown device, or CUDA asked for where there is none.
    """
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device must be cpu, cuda or cuda:N; got {name!r}") from err
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"--device must be cpu, cuda or cuda:N; got {name!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine (or this torch build) has no CUDA GPU")
    count = torch.cuda.device_count()
    if device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.index >= count:
        raise ValueError(f"--device {name}: only {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return device


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``.

    Example:
        >>> did_you_mean("adamm", ["adam", "sgd"])
        "; did you mean 'adam'?"
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
