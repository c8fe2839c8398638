"""The demo's progress bar: one per section, ticked by the section, its clock always running."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["section_bar", "advance"]

_BAR: Any = None


@contextmanager
def section_bar(name: str, total: int | None) -> Iterator[Any]:
    """Show a tqdm bar for one section (``total`` steps, or a running clock when ``None``).

    On a terminal a background thread refreshes the bar every half second, so the elapsed
    time moves even while one long step (a training run) is under way.
    """
    global _BAR
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"{name:<9}", leave=False, dynamic_ncols=True,
               bar_format=None if total else "{desc}: {elapsed} {postfix}")
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()

    # The clock runs only on a terminal: in a log, each refresh would be another line.
    thread = threading.Thread(target=tick, daemon=True) if sys.stderr.isatty() else None
    _BAR = bar
    if thread is not None:
        thread.start()
    try:
        yield bar
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        _BAR = None
        bar.close()


def advance(label: str) -> None:
    """Mark one step of the running section done (``label``: what comes next); no-op outside.

    Example:
        >>> advance("drawing")  # outside ebmlab demo: nothing happens
    """
    if _BAR is not None:
        _BAR.set_postfix_str(label, refresh=False)
        _BAR.update(1)
