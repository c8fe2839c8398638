"""Energy landscapes, minima and descent trajectories over 1-D and 2-D domains."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ebmlab._checks import reference
from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.plot.figure import add_colorbar, axes_or_new, evaluate_grid

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ebmlab.inference.result import Inference

__all__ = [
    "landscape",
    "modes",
    "trajectories",
    "conditional",
]


def landscape(
    energy: Energy,
    x: Tensor | None = None,
    *,
    domain: Box,
    num: int = 200,
    ax: Axes | None = None,
    arrows: bool = False,
    arrow_num: int = 20,
    levels: int = 30,
    clip_quantile: float | None = 0.98,
    cmap: str = "viridis",
    colorbar: bool = True,
) -> Axes:
    r"""Draw :math:`F(x, \cdot)` over a 1-D domain (curve) or 2-D domain (heat map + contours).

    Args:
        energy: the energy to draw.
        x: one conditioning input (1, *x_shape) or ``None``.
        domain: a 1-D or 2-D :class:`ebmlab.Box`.
        num: grid points per axis.
        ax: axes to draw into (a new figure otherwise).
        arrows: overlay the descent field :math:`-\nabla F` on a coarser grid (2-D only).
        arrow_num: arrows per axis.
        levels: contour levels.
        clip_quantile: clip the colour scale at this quantile so deep wells stay visible.
        cmap: matplotlib colour map.
        colorbar: add a colour bar.

    Returns:
        The matplotlib axes.

    Example:
        >>> import ebmlab as eb
        >>> ax = eb.plot.landscape(eb.energies.DoubleWell(2), domain=eb.Box([-2, -2], [2, 2]),
        ...                        num=20, arrows=True)
    """
    ax = axes_or_new(ax)
    axes, values = evaluate_grid(energy, domain, num, x)
    values = values.detach().cpu().double()
    if domain.dim == 1:
        ax.plot(axes[0].cpu(), values)
        ax.set_xlabel("y")
        ax.set_ylabel("F(y)")
        return ax
    vmax = None
    finite = values[torch.isfinite(values)]
    if clip_quantile is not None and finite.numel():
        vmax = float(torch.quantile(finite.flatten()[:1_000_000], clip_quantile))
    a0, a1 = axes[0].cpu(), axes[1].cpu()
    mesh = ax.pcolormesh(a0, a1, values.T, shading="auto", cmap=cmap, vmax=vmax)
    ax.contour(a0, a1, values.T.clamp(max=vmax) if vmax else values.T, levels=levels,
               colors="white", linewidths=0.4, alpha=0.5)
    if colorbar:
        add_colorbar(mesh, ax, "energy")
    if arrows:
        grid = domain.grid(arrow_num, dtype=values.dtype)
        pts = grid.points.to(
            dtype=x.dtype if x is not None else torch.get_default_dtype(),
            device=x.device if x is not None else None,
        )
        xr = None if x is None else x.expand(pts.shape[0], *x.shape[1:])
        _, g = energy.energy_and_grad(pts, xr)
        g = -g.detach().cpu().double()
        norm = g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        ax.quiver(pts[:, 0].cpu(), pts[:, 1].cpu(), (g / norm)[:, 0], (g / norm)[:, 1],
                  norm.squeeze(-1), cmap="autumn", scale=arrow_num * 1.6, width=0.003)
    ax.set_xlabel("y₁")
    ax.set_ylabel("y₂")
    ax.set_aspect("equal")
    return ax


def modes(
    inference: Inference,
    b: int = 0,
    *,
    ax: Axes | None = None,
    trajectories: bool = True,
    color: str = "red",
) -> Axes:
    """Mark the distinct minima of input ``b`` (and optionally every start's path).

    Works for 2-D ``y`` (points in the plane) and 1-D ``y`` (vertical lines).

    Example:
        >>> import ebmlab as eb
        >>> res = eb.infer(eb.energies.DoubleWell(2), num_starts=8, return_trajectory=True)
        >>> ax = eb.plot.modes(res)
    """
    ax = axes_or_new(ax)
    if trajectories and inference.trajectory is not None:
        globals()["trajectories"](inference.trajectory[:, b], ax=ax)
    pts = inference.minima(b).detach().cpu().double()
    if pts.ndim == 2 and pts.shape[1] == 2:
        ax.scatter(pts[:, 0], pts[:, 1], marker="*", s=180, c=color, edgecolors="black",
                   zorder=5, label=f"{pts.shape[0]} minima")
    else:
        for v in pts.reshape(pts.shape[0], -1)[:, 0]:
            ax.axvline(float(v), color=color, ls="--")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def trajectories(paths: Tensor, *, ax: Axes | None = None, max_paths: int = 64) -> Axes:
    """Draw descent paths (T, S, 2) as lines from a start (circle) to an end point.

    Example:
        >>> import torch, ebmlab as eb
        >>> ax = eb.plot.trajectories(torch.randn(10, 4, 2).cumsum(0))
    """
    ax = axes_or_new(ax)
    p = paths.detach().cpu().double()
    if p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"paths must have shape (T, S, 2); got {tuple(p.shape)}")
    for s in range(min(p.shape[1], max_paths)):
        ax.plot(p[:, s, 0], p[:, s, 1], color="white", lw=0.8, alpha=0.8)
        ax.plot(p[0, s, 0], p[0, s, 1], "o", color="white", ms=2.5)
    return ax


@torch.no_grad()
def conditional(
    energy: Energy,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    num: int = 200,
    ax: Axes | None = None,
    clip_quantile: float | None = 0.9,
    cmap: str = "magma",
) -> Axes:
    r"""Draw a conditional energy :math:`F(x, y)` with scalar x and y over the (x, y) plane.

    The picture of an implicit function: dark valleys are the y compatible with each x.

    Example:
        >>> import ebmlab as eb
        >>> f = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1))
        >>> ax = eb.plot.conditional(f, x_range=(0, 4), y_range=(-3, 3), num=30)
    """
    ax = axes_or_new(ax)
    dtype, _ = reference(energy)
    box = Box([x_range[0], y_range[0]], [x_range[1], y_range[1]])
    grid = box.grid(num, dtype=dtype)
    pts = grid.points
    values = energy(pts[:, 1:], pts[:, :1]).reshape(num, num).cpu().double()
    vmax = float(torch.quantile(values.flatten(), clip_quantile)) if clip_quantile else None
    mesh = ax.pcolormesh(grid.axes[0].cpu(), grid.axes[1].cpu(), values.T, shading="auto",
                         cmap=cmap, vmax=vmax)
    add_colorbar(mesh, ax, "F(x, y)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return ax
