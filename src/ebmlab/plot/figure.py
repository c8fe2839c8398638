"""Figure helpers for scripts and the demo: grids of axes and atomic PNG saving."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["subplots", "save"]


def subplots(
    ncols: int = 1, nrows: int = 1, *, size: float = 4.2, title: str | None = None
) -> tuple[Figure, list[Axes]]:
    """Return a figure and its axes as a flat list (``size`` inches per panel).

    Example:
        >>> import ebmlab as eb
        >>> fig, axes = eb.plot.subplots(2, title="two panels")
        >>> len(axes)
        2
    """
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * 1.15, size * nrows),
                             squeeze=False)
    if title:
        fig.suptitle(title)
    return fig, list(axes.flat)


def save(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG atomically (temporary file, then rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    os.replace(tmp, path)
    plt.close(fig)
    return path
