"""The one figure style of ebmlab.plot: backend, constrained layout, colour bars, 150 dpi PNGs.

Every figure uses matplotlib's constrained layout; a heat map's colour bar has the height of
the plot it belongs to (:func:`add_colorbar`), panels that are compared share one colour scale
(:func:`share_color_scale`), and :func:`save` writes 150 dpi PNGs atomically.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

# The one backend choice of ebmlab.plot: this module is imported first by the package, so
# every other plot module can import pyplot plainly. Agg (files only) unless the user chose a
# backend: MPLBACKEND set, or pyplot already imported (a notebook's %matplotlib inline).
if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from ebmlab._checks import reference  # noqa: E402
from ebmlab.domain import Box  # noqa: E402
from ebmlab.energy import Energy  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["subplots", "save", "axes_or_new", "evaluate_grid", "add_colorbar",
           "share_color_scale", "DPI"]

DPI = 150


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
                             squeeze=False, layout="constrained")
    if title:
        fig.suptitle(title)
    return fig, list(axes.flat)


def save(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG atomically (temporary file, then rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")  # unique
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")
    fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    os.replace(tmp, path)
    plt.close(fig)
    return path


def axes_or_new(ax: Axes | None, figsize: tuple[float, float] = (5.0, 4.0)) -> Axes:
    """Return ``ax`` or the axes of a new figure."""
    if ax is not None:
        return ax
    return plt.subplots(figsize=figsize, layout="constrained")[1]


def add_colorbar(mappable: Any, ax: Axes, label: str | None = None) -> Any:
    """Add a colour bar of exactly the plot's height beside ``ax`` (aspect-ratio aware).

    A colour bar taken from the axes' grid cell gets the cell's height, up to twice the plot's
    when the plot keeps an equal aspect; an inset in axes coordinates follows the plot itself.

    Example:
        >>> import torch, ebmlab as eb
        >>> fig, (ax,) = eb.plot.subplots()
        >>> bar = eb.plot.figure.add_colorbar(ax.pcolormesh(torch.rand(4, 4)), ax, "energy")
    """
    cax = ax.inset_axes((1.03, 0.0, 0.045, 1.0))
    return ax.figure.colorbar(mappable, cax=cax, label=label)


def share_color_scale(axes: Sequence[Axes], label: str | None = None, *,
                      vmin: float | None = None, colorbar: bool = True) -> tuple[float, float]:
    """Put the heat maps of ``axes`` on one colour scale, with one colour bar beside the last.

    Args:
        axes: panels holding one heat map each (``pcolormesh`` or ``imshow``).
        label: the colour bar's label.
        vmin: the scale's lower end (default: the smallest value shown).
        colorbar: add the colour bar.

    Returns:
        The shared ``(vmin, vmax)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> fig, axes = eb.plot.subplots(2)
        >>> for k, ax in enumerate(axes):
        ...     _ = ax.pcolormesh(torch.rand(4, 4) * (k + 1))
        >>> low, high = eb.plot.figure.share_color_scale(axes, "P(y)", vmin=0.0)
        >>> low == 0.0 and high > 1.0
        True
    """
    from matplotlib.collections import QuadMesh
    from matplotlib.image import AxesImage

    maps = [m for ax in axes for m in [*ax.collections, *ax.images]
            if isinstance(m, (QuadMesh, AxesImage))]  # heat maps, not contours or scatters
    if not maps:
        raise ValueError("share_color_scale found no heat map in the axes")
    low = vmin if vmin is not None else min(float(m.get_clim()[0]) for m in maps)
    high = max(float(m.get_clim()[1]) for m in maps)
    for m in maps:
        m.set_clim(low, high)
    if colorbar:
        add_colorbar(maps[-1], axes[-1], label)
    return low, high


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
