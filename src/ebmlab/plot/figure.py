"""Figure helpers shared by every plot: the one backend choice, axes, grids, atomic PNG saving."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

# The one backend choice of ebmlab.plot: this module is imported first by the package, so
# every other plot module can import pyplot plainly. force=False keeps a backend the user chose.
matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from ebmlab._checks import reference  # noqa: E402
from ebmlab.domain import Box  # noqa: E402
from ebmlab.energy import Energy  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["subplots", "save", "axes_or_new", "evaluate_grid"]


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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")  # unique
    fig.tight_layout()
    fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    os.replace(tmp, path)
    plt.close(fig)
    return path


def axes_or_new(ax: Axes | None, figsize: tuple[float, float] = (5.0, 4.0)) -> Axes:
    """Return ``ax`` or the axes of a new figure."""
    if ax is not None:
        return ax
    return plt.subplots(figsize=figsize)[1]


@torch.no_grad()
def evaluate_grid(
    energy: Energy, domain: Box, num: int, x: Tensor | None = None, chunk_size: int = 65536
) -> tuple[list[Tensor], Tensor]:
    """Evaluate F on the midpoint grid of a 1-D or 2-D ``domain``; returns (axes, values).

    ``x`` is a single input (1, *x_shape) or None; values have shape ``domain`` grid sizes.
    """
    if domain.dim not in (1, 2):
        raise ValueError(f"plots need a 1-D or 2-D domain; got dimension {domain.dim}")
    dtype, device = reference(x, energy)
    grid = domain.grid(num, dtype=dtype, device=device)
    if x is not None and x.shape[0] != 1:
        raise ValueError(f"x must hold one input (1, *x_shape); got shape {tuple(x.shape)}")
    values = []
    for chunk in grid.points.split(chunk_size):
        xr = None if x is None else x.expand(chunk.shape[0], *x.shape[1:])
        values.append(energy(chunk, xr))
    return grid.axes, torch.cat(values).reshape(grid.sizes)
