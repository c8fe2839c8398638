"""Demo section: energies as probabilities (Gibbs–Boltzmann), β, sampling and log Z estimates."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

import ebmlab as eb
from ebmlab.demo.progress import advance
from ebmlab.partition import AIS, Grid, Importance

__all__ = ["run", "STEPS"]

STEPS = 4  # the β strip, the samples, log Z, the ellipse

BETAS = (0.3, 1.0, 3.0, 10.0)


def _ellipse_panels(out: Path, quick: bool) -> list[str]:
    """P(y) of the course's ellipse from its free energy, when issue 3's pieces exist."""
    ellipse = getattr(eb.energies, "Ellipse", None)
    latent = getattr(eb, "latent", None)
    if ellipse is None or latent is None or not hasattr(eb, "FreeEnergy"):
        return ["(ellipse panel skipped: eb.energies.Ellipse / eb.FreeEnergy not available)"]
    box = eb.Box([-3.0, -2.0], [3.0, 2.0])
    z_grid = latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    betas = (1.0, 3.2, 10.0)
    fig, axes = eb.plot.subplots(len(betas), title="Ellipse (w = (1, 1)): P(y) ∝ exp(−β F_β(y)) "
                                 "on one scale")
    lines = []
    for ax, beta in zip(axes, betas, strict=True):
        free = eb.FreeEnergy(ellipse(), z_grid, beta=beta, reduction="integral")
        p = eb.Gibbs(free, beta=beta, domain=box, estimator=Grid(num=80 if quick else 160))
        eb.plot.density(p, num=80 if quick else 160, ax=ax, colorbar=False)
        ax.set_title(f"β = {beta:g}: entropy {p.entropy().item():.2f}")
        lines.append(f"ellipse β={beta:<5g} log Z={p.log_partition().value.item():8.3f}  "
                     f"entropy={p.entropy().item():6.3f}")
    eb.plot.figure.share_color_scale(axes, "P(y)", vmin=0.0)
    eb.plot.save(fig, out / "gibbs_ellipse.png", dpi=80 if quick else eb.plot.figure.DPI)
    advance("done")
    return lines


def run(out: Path, quick: bool) -> list[str]:
    """Draw the Gibbs section's figures into ``out`` and return the summary lines."""
    gen = torch.Generator().manual_seed(0)
    num = 90 if quick else 200
    lines: list[str] = []

    # 1. One energy, several temperatures: cold puts the mass in the minima, hot is flat.
    well = eb.energies.DoubleWell(2, scale=0.5)
    box = eb.Box([-2.0, -2.0], [2.0, 2.0])
    betas = BETAS[::2] + BETAS[-1:] if quick else BETAS  # quick: 0.3, 3, 10
    fig, axes = eb.plot.subplots(len(betas) + 1, title="DoubleWell(scale 0.5): P(y) ∝ exp(−βF(y)),"
                                 " one colour scale for every β")
    eb.plot.density_vs_beta(eb.energies.DoubleWell(1), BETAS, domain=eb.Box(-2.0, 2.0),
                            ax=axes[0])
    for ax, beta in zip(axes[1:], betas, strict=True):
        p = eb.Gibbs(well, beta=beta, domain=box, estimator=Grid(num=num))
        eb.plot.density(p, num=num, ax=ax, colorbar=False)
        ax.set_title(f"β = {beta:g}")
        lines.append(f"DoubleWell β={beta:<5g} entropy={p.entropy().item():6.3f} "
                     f"(uniform: {math.log(box.volume):.3f})  "
                     f"sd(y₁)={p.variance[0].sqrt().item():.3f}")
    eb.plot.figure.share_color_scale(axes[1:], "P(y)", vmin=0.0)
    eb.plot.save(fig, out / "gibbs_beta.png", dpi=80 if quick else eb.plot.figure.DPI)
    advance("samples")

    # 2. Exact grid samples over their density, for a multi-modal energy.
    ring = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.3)
    ring_box = eb.Box([-3.5, -3.5], [3.5, 3.5])
    p = eb.Gibbs(ring, domain=ring_box)
    samples = p.sample((1000 if quick else 4000,), generator=gen)
    fig, axes = eb.plot.subplots(2, title="Samples drawn from a Gibbs distribution")
    eb.plot.samples_on_density(p, samples, num=num, ax=axes[0])
    axes[0].set_title("8 Gaussians: exact grid sampling")
    p1 = eb.Gibbs(eb.energies.DoubleWell(1), beta=3.0, domain=eb.Box(-2.0, 2.0))
    eb.plot.samples_on_density(p1, p1.sample((4000,), generator=gen), ax=axes[1])
    axes[1].set_title("DoubleWell(1), β = 3")
    eb.plot.figure.add_colorbar(axes[0].collections[0], axes[0], "P(y)")
    eb.plot.save(fig, out / "gibbs_samples.png", dpi=80 if quick else eb.plot.figure.DPI)
    advance("log Z")

    # 3. log Z of the normalised mixture (true value 0) by the three estimators.
    lines.append(f"{'log Z of 8 Gaussians':<22}{'estimate':>10}{'stderr':>9}{'ESS':>8}"
                 f"{'time (s)':>10}")
    estimators = [
        ("grid 256²", Grid()),
        ("importance 20k", Importance(20_000)),
        ("AIS 128×50", AIS(num_chains=128, num_temperatures=50 if quick else 200)),
    ]
    for name, estimator in estimators:
        start = time.perf_counter()
        est = estimator.log_partition(ring, domain=ring_box, generator=gen)
        seconds = time.perf_counter() - start
        ess = "-" if est.ess is None else f"{est.ess.item():.0f}"
        lines.append(f"{name:<22}{est.value.item():>10.4f}{est.stderr.item():>9.4f}{ess:>8}"
                     f"{seconds:>10.3f}")

    advance("ellipse")
    lines += _ellipse_panels(out, quick)
    return lines
