"""Latent-variable pictures after the course: F_∞ map, E against z, F_β sections, the horn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ebmlab._checks import reference
from ebmlab.domain import Box
from ebmlab.energy import LatentEnergy
from ebmlab.latent import FreeEnergy, LatentSet
from ebmlab.latent import manifold as manifold_of
from ebmlab.plot.figure import add_colorbar, axes_or_new

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "free_energy_map",
    "energy_vs_z",
    "free_energy_vs_beta",
    "manifold",
    "responsibilities",
    "horn_surface",
]

COURSE_BOX = Box([-3.0, -2.0], [3.0, 2.0])


def _cpu(t: Tensor) -> Tensor:
    return t.detach().cpu().double()


@torch.no_grad()
def free_energy_map(
    free_energy: FreeEnergy,
    *,
    domain: Box = COURSE_BOX,
    step: float = 0.25,
    num: int = 121,
    data: Tensor | None = None,
    manifold: Tensor | None = None,
    x: Tensor | None = None,
    ax: Axes | None = None,
    colorbar: bool = True,
) -> Axes:
    r"""Draw the free energy over a 2-D box with :math:`-\nabla F` arrows, data and manifold.

    The course's picture: :math:`F_\infty` over :math:`y_1 \in [-3, 3]`,
    :math:`y_2 \in [-2, 2]`, arrows on the grid of step 0.25 pointing down the free energy.

    Args:
        free_energy: the :class:`ebmlab.FreeEnergy` (2-D y).
        domain: the box drawn (the course's by default).
        step: spacing of the arrow grid.
        num: heat-map points per axis.
        data: optional (N, 2) points drawn as dots.
        manifold: optional (N, 2) decoded manifold drawn as a closed line of points.
        x: one conditioning input (1, *x_shape) or ``None``.
        ax: axes to draw into. colorbar: add a colour bar.

    Example:
        >>> import math, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
        >>> ax = eb.plot.free_energy_map(eb.FreeEnergy(eb.energies.Ellipse(), grid), num=20,
        ...                              step=1.0)
    """
    if domain.dim != 2:
        raise ValueError(f"free_energy_map needs a 2-D domain; got dimension {domain.dim}")
    ax = axes_or_new(ax)
    dtype, _ = reference(free_energy)
    low, high = domain.low.tolist(), domain.high.tolist()
    a0 = torch.linspace(low[0], high[0], num, dtype=dtype)
    a1 = torch.linspace(low[1], high[1], num, dtype=dtype)
    pts = torch.stack(torch.meshgrid(a0, a1, indexing="ij"), -1).reshape(-1, 2)
    xr = None if x is None else x.expand(pts.shape[0], *x.shape[1:])
    values = _cpu(free_energy(pts, xr)).reshape(num, num)
    mesh = ax.pcolormesh(a0, a1, values.T, shading="auto", cmap="viridis")
    if colorbar:
        add_colorbar(mesh, ax, "free energy")
    g0 = torch.arange(low[0], high[0] + 1e-9, step, dtype=dtype)
    g1 = torch.arange(low[1], high[1] + 1e-9, step, dtype=dtype)
    arrows = torch.stack(torch.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 2)
    xr = None if x is None else x.expand(arrows.shape[0], *x.shape[1:])
    _, grad = free_energy.energy_and_grad(arrows, xr)
    grad = -_cpu(grad)
    ax.quiver(arrows[:, 0], arrows[:, 1], grad[:, 0], grad[:, 1], color="white", alpha=0.8,
              angles="xy", scale_units="xy", scale=max(float(grad.norm(dim=-1).max()), 1e-12)
              / step, width=0.003)
    if manifold is not None:
        m = _cpu(manifold).reshape(-1, 2)
        ax.plot(m[:, 0], m[:, 1], ".", color="orange", ms=4, label="manifold")
    if data is not None:
        d = _cpu(data)
        ax.plot(d[:, 0], d[:, 1], "o", color="deepskyblue", mec="black", ms=5, label="data")
    if manifold is not None or data is not None:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("y₁")
    ax.set_ylabel("y₂")
    ax.set_aspect("equal")
    return ax


@torch.no_grad()
def energy_vs_z(
    latent_energy: LatentEnergy,
    latent: LatentSet,
    y: Tensor,
    *,
    z_start: float = 0.0,
    step_size: float = 0.02,
    num_steps: int = 40,
    x: Tensor | None = None,
    ax: Axes | None = None,
) -> Axes:
    r"""Draw :math:`E(y, z)` against a scalar z for each row of y, with the descent z̃ → ž.

    From ``z_start`` (z̃), ``num_steps`` of gradient descent on z (dots) slide down each
    curve; the exact minimiser over the set, ž, is starred.

    Args:
        latent_energy: E with a scalar z (z_shape (1,)).
        latent: a finite set of z (the curve's abscissae).
        y: (B, *y_shape) a few points. x: their inputs or ``None``.
        z_start, step_size, num_steps: the descent drawn.
        ax: axes to draw into.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
        >>> ax = eb.plot.energy_vs_z(eb.energies.Ellipse(), grid, torch.tensor([[0.5, 1.0]]))
    """
    ax = axes_or_new(ax)
    free = FreeEnergy(latent_energy, latent)
    z = latent.points(dtype=y.dtype, device=y.device)
    if z.shape[1:] != (1,):
        raise ValueError(f"energy_vs_z needs a scalar z (z_shape (1,)); got {tuple(z.shape[1:])}")
    e = _cpu(latent_energy.pairwise(y, z, x))  # (B, N)
    z_best = _cpu(free.argmin_z(y, x))[:, 0]
    zc = _cpu(z)[:, 0]
    path_z = torch.full((y.shape[0], 1), z_start, dtype=y.dtype, device=y.device)
    path = [path_z]
    for _ in range(num_steps):
        _, _, gz = latent_energy.energy_and_grad(y, path_z, x)
        path_z = path_z - step_size * gz
        path.append(path_z)
    zs = _cpu(torch.cat(path, 1))
    es = _cpu(torch.stack([latent_energy(y, p, x) for p in path], 1))
    for b in range(y.shape[0]):
        label = f"y = {[round(v, 2) for v in _cpu(y[b]).tolist()]}"
        (line,) = ax.plot(zc, e[b], lw=1.5, label=label)
        ax.plot(zs[b], es[b], ".", color=line.get_color(), ms=4)
        ax.plot(zs[b, 0], es[b, 0], "o", color=line.get_color(), mfc="white")
        ax.plot(z_best[b], e[b].min(), "*", color=line.get_color(), ms=14, mec="black")
    ax.set_xlabel("z  (o: z̃ start, ★: ž)")
    ax.set_ylabel("E(y, z)")
    ax.legend(fontsize=7)
    return ax


@torch.no_grad()
def free_energy_vs_beta(
    latent_energy: LatentEnergy,
    latent: LatentSet,
    y: Tensor,
    *,
    betas: Sequence[float] = (0.1, 0.3, 1.0, 3.2, 10.0, math.inf),
    abscissa: Tensor | None = None,
    reduction: str = "mean",
    x: Tensor | None = None,
    ax: Axes | None = None,
) -> Axes:
    r"""Draw free-energy cross-sections :math:`F_\beta` along a line of points, one per β.

    The course's picture is ``y`` = (0, y₂) for y₂ ∈ [−2, 2]: cold β gives the min-energy
    (two sharp wells at the ellipse), hot β smooths them into one bowl (the mean energy).

    Args:
        latent_energy, latent: E and the set z ranges over.
        y: (N, *y_shape) the points of the section.
        betas: the inverse temperatures drawn.
        abscissa: (N,) horizontal coordinate (default the last coordinate of y).
        reduction: ``"mean"`` (the course) or ``"integral"``.
        x: inputs for y or ``None``. ax: axes to draw into.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
        >>> y = torch.stack([torch.zeros(41), torch.linspace(-2, 2, 41)], -1)
        >>> ax = eb.plot.free_energy_vs_beta(eb.energies.Ellipse(), grid, y)
    """
    ax = axes_or_new(ax)
    t = _cpu(abscissa if abscissa is not None else y.reshape(y.shape[0], -1)[:, -1])
    cmap = plt.get_cmap("plasma")
    for i, beta in enumerate(betas):
        free = FreeEnergy(latent_energy, latent, beta=beta, reduction=reduction)
        color = "black" if math.isinf(beta) else cmap(i / max(1, len(betas) - 1))
        ax.plot(t, _cpu(free(y, x)), color=color, label="β = ∞" if math.isinf(beta)
                else f"β = {beta:g}")
    ax.set_xlabel("y₂")
    ax.set_ylabel("F_β(0, y₂)")
    ax.legend(fontsize=7)
    return ax


def manifold(
    latent_energy: LatentEnergy,
    latent: LatentSet,
    x: Tensor | None = None,
    *,
    data: Tensor | None = None,
    color: str = "orange",
    label: str = "manifold",
    ax: Axes | None = None,
) -> Axes:
    """Draw the manifold of predictions decoded from each z of the set (2-D y), and data.

    Example:
        >>> import math, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
        >>> ax = eb.plot.manifold(eb.energies.Ellipse(), grid)
    """
    ax = axes_or_new(ax)
    m = _cpu(manifold_of(latent_energy, latent, x))
    for b in range(m.shape[0]):
        ax.plot(m[b, :, 0], m[b, :, 1], ".-", color=color, ms=4, lw=0.6,
                label=label if b == 0 else None)
    if data is not None:
        d = _cpu(data)
        ax.plot(d[:, 0], d[:, 1], "o", color="deepskyblue", mec="black", ms=5, label="data")
    ax.set_aspect("equal")
    ax.set_xlabel("y₁")
    ax.set_ylabel("y₂")
    ax.legend(fontsize=8, loc="upper right")
    return ax


@torch.no_grad()
def responsibilities(
    free_energy: FreeEnergy,
    y: Tensor,
    x: Tensor | None = None,
    *,
    ax: Axes | None = None,
) -> Axes:
    r"""Colour the manifold's points by the softargmin weights :math:`r(z \mid y)` of one y.

    Args:
        free_energy: a :class:`ebmlab.FreeEnergy` over a finite set (its β sets the spread).
        y: (1, 2) the point whose responsibilities are drawn (a cross).
        x: its input or ``None``. ax: axes to draw into.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
        >>> free = eb.FreeEnergy(eb.energies.Ellipse(), grid, beta=1.0)
        >>> ax = eb.plot.responsibilities(free, torch.tensor([[0.0, 0.5]]))
    """
    ax = axes_or_new(ax)
    if y.shape[0] != 1:
        raise ValueError(f"y must hold one point (1, 2); got shape {tuple(y.shape)}")
    r = _cpu(free_energy.responsibilities(y, x))[0]
    m = _cpu(manifold_of(free_energy.latent_energy, free_energy.latent, x))[0]
    sc = ax.scatter(m[:, 0], m[:, 1], c=r, cmap="magma_r", s=30, edgecolors="grey",
                    linewidths=0.3, vmin=0.0)
    add_colorbar(sc, ax, "responsibility r(z | y)")
    yc = _cpu(y)[0]
    ax.plot(yc[0], yc[1], "x", color="blue", ms=10, mew=2)
    beta = "∞" if math.isinf(free_energy.beta) else f"{free_energy.beta:g}"
    ax.set_title(f"β = {beta}")
    ax.set_aspect("equal")
    return ax


@torch.no_grad()
def horn_surface(
    latent_energy: LatentEnergy,
    latent: LatentSet,
    *,
    x_values: Tensor | None = None,
    data: tuple[Tensor, Tensor] | None = None,
    ax: Axes | None = None,
) -> Axes:
    r"""Draw the horn: the decoded surface :math:`(x, z) \mapsto (x, y_1, y_2)` and the data.

    Args:
        latent_energy: a conditional E with a decoder and scalar x (the :class:`Horn`).
        latent: a finite set of scalar z.
        x_values: (M, 1) inputs of the surface (21 points in [0, 1] by default).
        data: optional ``(x, y)`` drawn as dots.
        ax: 3-D axes to draw into (a new figure otherwise).

    Example:
        >>> import math, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 24, periodic=True)
        >>> ax = eb.plot.horn_surface(eb.energies.Horn(), grid)
    """
    if ax is None:
        ax = plt.figure(figsize=(6, 5), layout="constrained").add_subplot(projection="3d")
    dtype, _ = reference(latent_energy)
    xs = x_values if x_values is not None else torch.linspace(0, 1, 21, dtype=dtype)
    xs = xs.reshape(-1, 1)
    m = _cpu(manifold_of(latent_energy, latent, xs))  # (M, N, 2)
    m = torch.cat([m, m[:, :1]], 1)  # close each ring of the periodic z
    xx = _cpu(xs).expand(-1, m.shape[1])
    ax.plot_surface(xx.numpy(), m[..., 0].numpy(), m[..., 1].numpy(), cmap="viridis",
                    alpha=0.55, linewidth=0.2, edgecolor="grey")
    if data is not None:
        dx, dy = _cpu(data[0]).reshape(-1), _cpu(data[1])
        ax.scatter(dx, dy[:, 0], dy[:, 1], s=4, color="crimson", depthshade=False)
    ax.set_xlabel("x")
    ax.set_ylabel("y₁")
    ax.set_zlabel("y₂")
    return ax
