"""Gibbs–Boltzmann densities: P(y) on a box, its change with β, and samples drawn over it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.gibbs import Gibbs
from ebmlab.plot.figure import add_colorbar, axes_or_new

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["density", "density_vs_beta", "samples_on_density"]


@torch.no_grad()
def _density_on_grid(gibbs: Gibbs, num: int, b: int) -> tuple[list[Tensor], Tensor]:
    """Return the grid axes and P(y) of input ``b`` on a ``num``-per-axis midpoint grid."""
    domain = gibbs.domain
    if domain.dim not in (1, 2):
        raise ValueError(f"density plots need a 1-D or 2-D domain; got dimension {domain.dim}")
    if gibbs.batch_shape and not 0 <= b < gibbs.batch_shape[0]:
        raise ValueError(f"b must be in [0, {gibbs.batch_shape[0]}); got {b}")
    dtype = gibbs.x.dtype if gibbs.x is not None else gibbs.log_partition().value.dtype
    grid = domain.grid(num, dtype=dtype, device=gibbs.log_partition().value.device)
    y = grid.points
    if gibbs.batch_shape:  # (N, *event) -> (N, B, *event): every input sees the same grid
        y = y.unsqueeze(1).expand(y.shape[0], gibbs.batch_shape[0], *y.shape[1:])
    log_p = gibbs.log_prob(y)
    if gibbs.batch_shape:
        log_p = log_p[:, b]
    return grid.axes, log_p.exp().reshape(grid.sizes).cpu().double()


def density(
    gibbs: Gibbs,
    *,
    b: int = 0,
    num: int = 200,
    ax: Axes | None = None,
    cmap: str = "magma",
    colorbar: bool = True,
    label: str | None = None,
) -> Axes:
    r"""Draw :math:`P(y|x_b)` of a 1-D (curve) or 2-D (heat map) Gibbs distribution.

    Args:
        gibbs: the distribution.
        b: which input of a batched distribution.
        num: grid points per axis.
        ax: axes to draw into (a new figure otherwise).
        cmap: colour map (2-D).
        colorbar: add a colour bar (2-D).
        label: legend label of the curve (1-D).

    Returns:
        The matplotlib axes.

    Example:
        >>> import ebmlab as eb
        >>> p = eb.Gibbs(eb.energies.DoubleWell(2), beta=2.0, domain=eb.Box([-2, -2], [2, 2]))
        >>> ax = eb.plot.density(p, num=40)
    """
    ax = axes_or_new(ax)
    axes, p = _density_on_grid(gibbs, num, b)
    if gibbs.domain.dim == 1:
        ax.plot(axes[0].cpu(), p, label=label)
        ax.set_xlabel("y")
        ax.set_ylabel("P(y)")
        return ax
    mesh = ax.pcolormesh(axes[0].cpu(), axes[1].cpu(), p.T, shading="auto", cmap=cmap)
    if colorbar:
        add_colorbar(mesh, ax, "P(y)")
    ax.set_xlabel("y₁")
    ax.set_ylabel("y₂")
    ax.set_aspect("equal")
    return ax


def density_vs_beta(
    energy: Energy,
    betas: Sequence[float],
    *,
    domain: Box,
    x: Tensor | None = None,
    num: int = 400,
    ax: Axes | None = None,
) -> Axes:
    r"""Draw :math:`P_\beta(y) \propto e^{-\beta F(y)}` on a 1-D domain for several β.

    Cold (large β): the mass sits in the minima; hot (small β): P flattens to uniform.

    Args:
        energy: the energy F.
        betas: the inverse temperatures, one curve each.
        domain: a 1-D box.
        x: one input (1, *x_shape) or ``None``.
        num: grid points.
        ax: axes to draw into (a new figure otherwise).

    Returns:
        The matplotlib axes.

    Example:
        >>> import ebmlab as eb
        >>> ax = eb.plot.density_vs_beta(eb.energies.DoubleWell(1), [0.3, 3.0],
        ...                              domain=eb.Box(-2.0, 2.0), num=50)
    """
    if domain.dim != 1:
        raise ValueError(f"density_vs_beta needs a 1-D domain; got dimension {domain.dim}")
    ax = axes_or_new(ax)
    for beta in betas:
        density(Gibbs(energy, x, beta=beta, domain=domain), num=num, ax=ax, label=f"β = {beta:g}")
    ax.legend(fontsize=8)
    ax.set_title("P(y) ∝ exp(−βF(y))")
    return ax


def samples_on_density(
    gibbs: Gibbs,
    samples: Tensor,
    *,
    b: int = 0,
    num: int = 200,
    ax: Axes | None = None,
    max_points: int = 3000,
    bins: int = 60,
) -> Axes:
    """Draw samples over the density: a scatter on the heat map (2-D), a histogram (1-D).

    Args:
        gibbs: the distribution the samples should follow.
        samples: (N, *event_shape), or (N, B, *event_shape) for a batched distribution.
        b: which input of a batched distribution.
        num: grid points per axis of the density.
        ax: axes to draw into (a new figure otherwise).
        max_points: at most this many points are scattered (2-D).
        bins: histogram bins (1-D).

    Returns:
        The matplotlib axes.

    Example:
        >>> import torch, ebmlab as eb
        >>> p = eb.Gibbs(eb.energies.DoubleWell(2), domain=eb.Box([-2, -2], [2, 2]))
        >>> y = p.sample((100,), generator=torch.Generator().manual_seed(0))
        >>> ax = eb.plot.samples_on_density(p, y, num=40)
    """
    ax = density(gibbs, b=b, num=num, ax=ax, colorbar=False, label="P(y)")
    s = samples.detach()
    if gibbs.batch_shape:
        s = s[:, b]
    s = s.reshape(s.shape[0], -1).cpu().double()
    if gibbs.domain.dim == 1:
        low, high = float(gibbs.domain.low[0]), float(gibbs.domain.high[0])
        ax.hist(s[:, 0], bins=bins, range=(low, high), density=True, alpha=0.5,
                color="tab:orange", label=f"{s.shape[0]} samples")
        ax.legend(fontsize=8)
        return ax
    s = s[:max_points]
    ax.scatter(s[:, 0], s[:, 1], s=3, c="cyan", alpha=0.6, linewidths=0,
               label=f"{s.shape[0]} samples")
    ax.legend(loc="upper right", fontsize=8)
    return ax
