"""Demo section: the course's latent-variable EBMs, the ellipse and the horn, trained and drawn."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import Tensor

import ebmlab as eb

__all__ = ["run", "train_energy_loss"]


def train_energy_loss(
    free_energy: eb.FreeEnergy,
    y: Tensor,
    x: Tensor | None = None,
    *,
    num_steps: int = 300,
    lr: float = 0.05,
    optimizer: str = "adam",
) -> list[float]:
    r"""Fit the parameters of a free energy by the energy loss, mean F(x, y) over the data.

    A plain full-batch optimiser loop (the learning module's ``eb.fit`` generalises it). The
    loss only pulls the energy down on data, which is enough here because the latent model's
    architecture (a 1-D z) limits the volume of low energy to a curve.

    Args:
        free_energy: the :class:`ebmlab.FreeEnergy` whose latent energy is trained.
        y: (N, *y_shape) data. x: (N, *x_shape) inputs or ``None``.
        num_steps: optimiser steps (L-BFGS iterations).
        lr: step size (Adam) or initial step (L-BFGS, with a strong-Wolfe line search).
        optimizer: ``"adam"`` or ``"lbfgs"`` (full batch, far fewer steps on these models).

    Returns:
        The loss at each evaluation.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> from ebmlab.demo.latent import train_energy_loss
        >>> model = eb.energies.Ellipse(w=(1.0, 1.0))
        >>> free = eb.FreeEnergy(model, eb.latent.Grid(0, 2 * math.pi, 48, periodic=True))
        >>> y = eb.data.ellipse(generator=torch.Generator().manual_seed(0))
        >>> losses = train_energy_loss(free, y, num_steps=100)
        >>> losses[-1] < 0.1 * losses[0]
        True
    """
    # Why not eb.fit: these fits are full-batch L-BFGS with a strong-Wolfe line search, which
    # re-evaluates the loss through a closure inside one optimizer.step(); fit's loop takes one
    # mini-batch step per iteration and has no closure, so it cannot reproduce these numbers
    # (nor the demo's figures) bit for bit. The Adam branch is kept beside it for the doctest.
    params = [p for p in free_energy.parameters() if p.requires_grad]
    losses: list[float] = []

    def closure() -> Tensor:
        opt.zero_grad()
        loss = free_energy(y, x).mean()
        loss.backward()
        losses.append(float(loss.detach()))
        return loss

    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr)
        for _ in range(num_steps):
            opt.step(closure)
    elif optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=lr, max_iter=num_steps, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-10,
                                tolerance_change=1e-14)
        opt.step(closure)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'lbfgs'; got {optimizer!r}")
    return losses


def run(out: Path, quick: bool) -> list[str]:
    """Draw the course's latent-variable figures into ``out``; return the summary lines."""
    gen = torch.Generator().manual_seed(0)
    dtype = torch.float64
    lines = []
    y = eb.data.ellipse(24, generator=gen, dtype=dtype)
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)

    # 1. Untrained against trained, at zero temperature and at β = 10.
    untrained = eb.energies.Ellipse(w=(1.0, 1.0)).to(dtype)
    trained = {}
    for beta in (math.inf, 10.0):
        model = eb.energies.Ellipse(w=(1.0, 1.0)).to(dtype)
        start = time.perf_counter()
        losses = train_energy_loss(eb.FreeEnergy(model, grid, beta=beta), y,
                                   num_steps=30 if quick else 100, lr=1.0, optimizer="lbfgs")
        w = [round(v, 3) for v in model.w.detach().tolist()]
        label = "∞" if math.isinf(beta) else f"{beta:g}"
        lines.append(f"ellipse, beta={label}: w = {w} (data: [2.0, 1.5]), loss "
                     f"{losses[0]:.3f} -> {losses[-1]:.4f} in {time.perf_counter() - start:.1f} s")
        trained[beta] = model
    model = trained[math.inf]
    fig, axes = eb.plot.subplots(2, title="Ellipse: untrained against trained (energy loss, β=∞)")
    for ax, energy, name in ((axes[0], untrained, "untrained"), (axes[1], model, "trained")):
        free = eb.FreeEnergy(energy, grid)
        eb.plot.free_energy_map(free, data=y, manifold=eb.manifold(energy, grid)[0], ax=ax,
                                num=61 if quick else 121, colorbar=False)
        ax.set_title(f"{name}: w = {[round(v, 2) for v in energy.w.detach().tolist()]}")
    eb.plot.save(fig, out / "latent_untrained_vs_trained.png")

    # 2. The free energy F_∞ with its descent field, the data and the manifold.
    free = eb.FreeEnergy(model, grid)
    fig, axes = eb.plot.subplots(1, title="Zero-temperature free energy F_∞(y) = min_z E(y, z)")
    eb.plot.free_energy_map(free, data=y, manifold=eb.manifold(model, grid)[0], ax=axes[0],
                            num=61 if quick else 161)
    eb.plot.save(fig, out / "latent_free_energy.png")

    # 3. E(y, z) against z, with the descent z̃ → ž; 4. the cross-sections F_β(0, y₂).
    fig, axes = eb.plot.subplots(2)
    probes = torch.tensor([[0.0, 0.5], [1.5, 1.0], [-2.5, -0.5]], dtype=dtype)
    eb.plot.energy_vs_z(model, grid, probes, z_start=1.0, ax=axes[0])
    axes[0].set_title("E(y, z) against z: descent z̃ → ž")
    section = torch.stack([torch.zeros(81, dtype=dtype), torch.linspace(-2, 2, 81, dtype=dtype)],
                          -1)
    eb.plot.free_energy_vs_beta(model, grid, section, ax=axes[1])
    axes[1].set_title("Cross-sections F_β(0, y₂)")
    eb.plot.save(fig, out / "latent_energy_vs_z.png")
    f0 = {b: float(eb.FreeEnergy(model, grid, beta=b)(torch.zeros(1, 2, dtype=dtype)).detach())
          for b in (0.1, 1.0, math.inf)}
    lines.append("F_beta(0, 0): " + ", ".join(
        f"beta={'inf' if math.isinf(b) else b}: {v:.3f}" for b, v in f0.items()))

    # 5. Responsibilities over z, coloured on the manifold, for one y and three β.
    fig, axes = eb.plot.subplots(3, title="Responsibilities r(z | y = (0, 0.5)) on the manifold")
    for ax, beta in zip(axes, (0.3, 3.0, math.inf), strict=True):
        eb.plot.responsibilities(eb.FreeEnergy(model, grid, beta=beta), probes[:1], ax=ax)
    eb.plot.save(fig, out / "latent_responsibilities.png")

    # 6. The horn: f(x) trained by the energy loss; the decoded surface over (x, z).
    x_h, y_h = eb.data.horn(128 if quick else 1024, generator=gen, dtype=dtype)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        horn = eb.energies.Horn().to(dtype)
    horn_grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    free_h = eb.FreeEnergy(horn, horn_grid)
    start = time.perf_counter()
    losses = train_energy_loss(free_h, y_h, x_h, num_steps=60 if quick else 400, lr=1.0,
                               optimizer="lbfgs")
    floor = _horn_floor(x_h, y_h, horn_grid)
    lines.append(f"horn: mean F_inf {losses[0]:.2f} -> {losses[-1]:.4f} (noise floor on this "
                 f"grid {floor:.4f}) in {time.perf_counter() - start:.1f} s")
    fig = eb.plot.subplots(1)[0]
    fig.clf()
    ax = fig.add_subplot(projection="3d")
    eb.plot.horn_surface(horn, horn_grid, data=(x_h, y_h), ax=ax)
    ax.set_title("Horn: trained manifold over (x, z) and data")
    eb.plot.save(fig, out / "latent_horn.png")
    return lines


class _TrueHorn(eb.LatentEnergy):
    """The horn with the generating radii ρ(x): its mean F_∞ on data is the noise floor."""

    y_shape, z_shape, x_shape = (2,), (1,), (1,)

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        assert x is not None
        return eb.data.horn_radii(x) * torch.cat([z.cos(), z.sin()], -1)

    def forward(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        return ((y - self.decode(z, x)) ** 2).sum(-1)


@torch.no_grad()
def _horn_floor(x: Tensor, y: Tensor, grid: eb.latent.Grid) -> float:
    return float(eb.FreeEnergy(_TrueHorn(), grid)(y, x).mean())
