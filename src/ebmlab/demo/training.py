"""Demo section: shaping energies: ellipse and horn by the energy loss, 8 Gaussians by CD."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

import ebmlab as eb
from ebmlab.training.negatives import Sampled

__all__ = ["run"]


def _ellipse(beta: float, data: torch.Tensor, steps: int) -> eb.FreeEnergy:
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    free = eb.FreeEnergy(eb.energies.Ellipse((1.0, 1.0)), grid, beta=beta)
    eb.fit(free, data, "energy_loss", optimizer=torch.optim.Adam(free.parameters(), lr=0.05),
           num_steps=steps, log_every=steps, progress=False)
    return free


def _horn(out: Path, gen: torch.Generator) -> str:
    x, y = eb.data.horn(1000, generator=gen)
    torch.manual_seed(0)
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    free = eb.FreeEnergy(eb.energies.Horn(), grid)
    start = time.perf_counter()
    steps = 1500
    eb.fit(free, (x, y), "energy_loss", optimizer=torch.optim.Adam(free.parameters(), lr=0.01),
           num_steps=steps, batch_size=256, log_every=steps, progress=False)
    seconds = time.perf_counter() - start
    xs = torch.tensor([[0.0], [0.5], [1.0]])
    with torch.no_grad():
        learned = free.latent_energy.f(xs)
    truth = eb.data.horn_radii(xs)
    fig, axes = eb.plot.subplots(3, title="The horn after training (F_inf; data: white)")
    for ax, x0 in zip(axes, xs, strict=True):
        r = float(truth[xs[:, 0] == x0[0]].abs().max())
        box = eb.Box([-1.3 * r, -1.3 * r], [1.3 * r, 1.3 * r])
        eb.plot.landscape(free, x0.reshape(1, 1), domain=box, ax=ax, num=80, colorbar=False)
        near = (x[:, 0] - x0[0]).abs() < 0.05
        ax.scatter(y[near, 0], y[near, 1], s=6, c="white", edgecolors="black", linewidths=0.3)
        ax.set_title(f"x = {float(x0[0]):.1f}")
    eb.plot.save(fig, out / "training_horn.png")
    error = float(((learned.abs() - truth).abs() / truth).max())
    return (f"horn: |f(x)| vs rho(x) at x = 0, 0.5, 1: max relative error {error:.1%} "
            f"({steps} steps, {seconds:.1f} s)")


def run(out: Path, quick: bool) -> list[str]:
    """Train the course's ellipse and an 8-Gaussian density; draw before/after landscapes."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and avoids contention
    try:
        return _run(out, quick)
    finally:
        torch.set_num_threads(old_threads)


def _run(out: Path, quick: bool) -> list[str]:
    gen = torch.Generator().manual_seed(0)
    lines = []

    # 1. The ellipse: learn w in E(y, z) = |y - [w1 cos z, w2 sin z]|^2 with the energy loss
    # on the free energy (z on the 48-point grid), at zero temperature and at beta = 3.
    data = eb.data.ellipse(24, generator=gen)
    box = eb.Box([-3.0, -2.0], [3.0, 2.0])
    steps = 120 if quick else 400
    fig, axes = eb.plot.subplots(3, title="Energy loss shapes the ellipse (data: white)")
    untrained = eb.FreeEnergy(eb.energies.Ellipse((1.0, 1.0)),
                              eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True))
    eb.plot.landscape(untrained, domain=box, ax=axes[0], num=80 if quick else 160,
                      colorbar=False)
    axes[0].set_title("untrained, w = (1, 1)")
    for ax, beta in zip(axes[1:], (math.inf, 3.0), strict=True):
        start = time.perf_counter()
        free = _ellipse(beta, data, steps)
        w = free.latent_energy.w.detach().tolist()
        seconds = time.perf_counter() - start
        eb.plot.landscape(free, domain=box, ax=ax, num=80 if quick else 160, colorbar=False)
        label = "∞" if math.isinf(beta) else f"{beta:g}"
        ax.set_title(f"trained, β = {label}: w = ({w[0]:.3f}, {w[1]:.3f})")
        lines.append(f"ellipse β={label:>3}: w = ({w[0]:.3f}, {w[1]:.3f}) "
                     f"(truth (2, 1.5)) in {steps} steps, {seconds:.2f} s")
    for ax in axes:
        ax.scatter(data[:, 0], data[:, 1], s=8, c="white", edgecolors="black", linewidths=0.3)
    eb.plot.figure.share_color_scale(axes, "free energy")
    eb.plot.save(fig, out / "training_ellipse.png")

    # 1b. The horn (full mode): E(x, y, z) = |y - f(x) * [cos z, sin z]|^2 with f a small ReLU
    # network, trained by the energy loss on F_inf; f(x) should approach rho(x).
    if not quick:
        lines.append(_horn(out, gen))

    # 2. A 2-D density: 8 Gaussians with persistent contrastive divergence (replay buffer).
    torch.manual_seed(0)
    model = eb.energies.MLPEnergy(2, hidden=(64, 64))
    density_box = eb.Box([-3.5, -3.5], [3.5, 3.5])
    samples = eb.data.eight_gaussians(4000, generator=gen)
    fig, axes = eb.plot.subplots(2, title="Contrastive divergence on 8 Gaussians")
    eb.plot.landscape(model, domain=density_box, ax=axes[0], num=60 if quick else 120)
    axes[0].set_title("MLP energy before")
    steps = 100 if quick else 1500
    negatives = Sampled(num_steps=10, step_size=0.01, init="buffer", domain=density_box)
    start = time.perf_counter()
    hist = eb.fit(
        model, samples, "contrastive_divergence", negatives=negatives,
        regularizer=lambda e_pos, e_neg: 0.1 * eb.losses.energy_l2(e_pos, e_neg),
        optimizer=torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.0, 0.999)),
        num_steps=steps, batch_size=256, log_every=steps, progress=False,
        generator=torch.Generator().manual_seed(1),
    )
    seconds = time.perf_counter() - start
    eb.plot.landscape(model, domain=density_box, ax=axes[1], num=60 if quick else 120)
    axes[1].set_title(f"after {steps} steps (gap {hist['gap'][-1]:.2f})")
    for ax in axes:
        ax.scatter(samples[:400, 0], samples[:400, 1], s=2, c="white", alpha=0.6)
    eb.plot.save(fig, out / "training_eight_gaussians.png")
    lines.append(f"8 Gaussians, PCD-10: {steps} steps in {seconds:.2f} s, final energy gap "
                 f"{hist['gap'][-1]:.3f}")
    return lines
