"""Pictures of MCMC: chains on a landscape, samples against the exact Gibbs density, traces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.plot.figure import add_colorbar, axes_or_new, evaluate_grid
from ebmlab.plot.landscape import landscape

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ebmlab.samplers.driver import Chain

__all__ = ["chains", "histogram_vs_exact", "trace", "swap_rates"]


def _samples(chain: Chain | Tensor) -> Tensor:
    samples = chain if isinstance(chain, Tensor) else chain.samples
    return samples.detach().cpu().double()


def chains(
    chain: Chain | Tensor,
    energy: Energy,
    *,
    domain: Box,
    num_chains: int = 4,
    ax: Axes | None = None,
    num: int = 150,
    starts: Tensor | None = None,
    last: int | None = 300,
) -> Axes:
    """Draw a few chains (T, chains, 2) as paths over the energy landscape of a 2-D domain.

    Args:
        chain: a :class:`ebmlab.samplers.Chain` or its samples (T, chains, 2).
        energy: the energy drawn underneath.
        domain: the 2-D box drawn.
        num_chains: how many chains to draw.
        ax: axes to draw into (a new figure otherwise).
        num: grid points per axis of the landscape.
        starts: (chains, 2) the true starting points (``y0``), marked by circles; without
            them the first sample drawn is marked as a square (it is not the start when a
            burn-in was dropped).
        last: draw only the last ``last`` samples of each chain (``None``: all).

    Example:
        >>> import torch, ebmlab as eb
        >>> energy = eb.energies.GaussianMixture.ring(4)
        >>> chain = eb.sample(energy, torch.zeros(3, 2), eb.samplers.MALA(0.05), 20)
        >>> ax = eb.plot.chains(chain, energy, domain=eb.Box([-3, -3], [3, 3]), num=20)
    """
    samples = _samples(chain)
    if samples.ndim != 3 or samples.shape[-1] != 2:
        raise ValueError(f"chains draws 2-D samples (T, chains, 2); got {tuple(samples.shape)}")
    ax = landscape(energy, domain=domain, ax=ax, num=num, colorbar=False)
    colors = ["#ff595e", "#ffca3a", "#8ac926", "#1982c4", "#6a4c93", "white"]
    if last is not None:
        samples = samples[-last:]
    begin = None if starts is None else starts.detach().cpu().double().reshape(-1, 2)
    for c in range(min(num_chains, samples.shape[1])):
        path = samples[:, c]
        color = colors[c % len(colors)]
        ax.plot(path[:, 0], path[:, 1], lw=0.6, alpha=0.8, color=color)
        ax.plot(path[-1, 0], path[-1, 1], "*", ms=9, color=color, mec="black")
        if begin is not None:
            ax.plot(begin[c, 0], begin[c, 1], "o", ms=6, color=color, mec="black")
        else:
            ax.plot(path[0, 0], path[0, 1], "s", ms=4, color=color, mec="black")
    ax.set_xlim(float(domain.low[0]), float(domain.high[0]))
    ax.set_ylim(float(domain.low[1]), float(domain.high[1]))
    return ax


@torch.no_grad()
def histogram_vs_exact(
    chain: Chain | Tensor,
    energy: Energy,
    *,
    domain: Box,
    beta: float = 1.0,
    bins: int = 60,
    axes: tuple[Axes, Axes] | None = None,
) -> tuple[Axes, Axes]:
    r"""Compare the samples with the exact Gibbs density :math:`e^{-\beta F}/Z` on ``domain``.

    Z comes from midpoint quadrature on the domain's grid. In 1-D both are drawn on one axes
    (histogram and curve, and the second axes shows the difference); in 2-D the left panel is
    the exact density and the right one the histogram of the samples, on the same scale.

    Returns:
        The two matplotlib axes.

    Example:
        >>> import torch, ebmlab as eb
        >>> energy = eb.energies.Quadratic(torch.eye(1))
        >>> chain = eb.sample(energy, torch.zeros(50, 1), eb.samplers.MALA(0.5), 20)
        >>> ax1, ax2 = eb.plot.histogram_vs_exact(chain, energy, domain=eb.Box(-4.0, 4.0), bins=20)
    """
    samples = _samples(chain)
    if axes is None:
        from ebmlab.plot.figure import subplots

        axes = tuple(subplots(2)[1])
    ax1, ax2 = axes
    grid_axes, values = evaluate_grid(energy, domain, bins)
    log_p = -beta * values.double().cpu()
    cell = domain.volume / log_p.numel()
    p = torch.exp(log_p - torch.logsumexp(log_p.flatten(), 0)) / cell
    flat = samples.reshape(-1, domain.dim)
    low, high = domain.low.double(), domain.high.double()
    if domain.dim == 1:
        xs = grid_axes[0].double().cpu()
        hist = torch.histc(flat[:, 0], bins=bins, min=float(low[0]), max=float(high[0]))
        hist = hist / (flat.shape[0] * cell)
        ax1.bar(xs, hist, width=cell, alpha=0.5, label="samples")
        ax1.plot(xs, p, color="black", label="exact e^(-βF)/Z")
        ax1.legend(fontsize=8)
        ax1.set_xlabel("y")
        ax2.plot(xs, hist - p)
        ax2.axhline(0.0, color="black", lw=0.5)
        ax2.set_title("histogram − exact")
        return ax1, ax2
    if domain.dim != 2:
        raise ValueError(f"histogram_vs_exact draws 1-D or 2-D domains; got dimension {domain.dim}")
    inside = ((flat >= low) & (flat <= high)).all(-1)
    pts = flat[inside]
    idx = ((pts - low) / (high - low) * bins).long().clamp(0, bins - 1)
    hist = torch.zeros(bins * bins, dtype=torch.float64)
    hist.index_add_(0, idx[:, 0] * bins + idx[:, 1], torch.ones(len(pts), dtype=torch.float64))
    hist = hist.reshape(bins, bins) / (flat.shape[0] * cell)
    vmax = float(p.max())
    extent = (float(low[0]), float(high[0]), float(low[1]), float(high[1]))
    for ax, image, title in ((ax1, p, "exact e^(-βF)/Z"), (ax2, hist, "samples")):
        shown = ax.imshow(image.T, origin="lower", extent=extent, vmin=0.0, vmax=vmax,
                          cmap="magma", aspect="equal")
        ax.set_title(title)
        ax.set_xlabel("y₁")
        ax.set_ylabel("y₂")
    add_colorbar(shown, ax2, "density (one scale)")
    return ax1, ax2


def trace(
    chain: Chain | Tensor, *, coordinate: int = 0, num_chains: int = 4, ax: Axes | None = None
) -> Axes:
    """Draw the trace of one coordinate for a few chains against the step.

    Example:
        >>> import torch, ebmlab as eb
        >>> ax = eb.plot.trace(torch.randn(50, 3, 2))
    """
    samples = _samples(chain).flatten(2)
    ax = axes_or_new(ax, figsize=(6.0, 3.0))
    for c in range(min(num_chains, samples.shape[1])):
        ax.plot(samples[:, c, coordinate], lw=0.7)
    ax.set_xlabel("step")
    ax.set_ylabel(f"y[{coordinate}]")
    return ax


def swap_rates(chain: Chain, betas: list[float] | None = None, *, ax: Axes | None = None) -> Axes:
    """Draw the swap acceptance of each neighbour pair of a ParallelTempering run.

    Rates near 0 mark where the ladder of betas is too sparse (add temperatures there);
    near 1, where it is denser than needed.

    Example:
        >>> import torch, ebmlab as eb
        >>> pt = eb.samplers.ParallelTempering(eb.samplers.MALA(0.1), [1.0, 0.5, 0.25])
        >>> chain = eb.sample(eb.energies.Quadratic(torch.eye(1)), torch.zeros(4, 1), pt, 10)
        >>> ax = eb.plot.swap_rates(chain, [1.0, 0.5, 0.25])
    """
    from ebmlab.samplers.parallel_tempering import ParallelTempering

    rates = ParallelTempering.swap_rates(chain.info).detach().cpu().double()
    ax = axes_or_new(ax, figsize=(5.0, 3.0))
    pairs = range(rates.shape[0])
    ax.bar(list(pairs), rates.tolist(), color="C0")
    if betas is not None:
        labels = [f"{betas[i]:.3g}-{betas[i + 1]:.3g}" for i in pairs]
        ax.set_xticks(list(pairs), labels, rotation=30)
    ax.set_xlabel("neighbour pair (beta_k - beta_k+1)")
    ax.set_ylabel("swap acceptance")
    ax.set_ylim(0.0, 1.0)
    return ax
