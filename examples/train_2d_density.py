"""CD, NCE and score matching on 2-D data: three ways to learn a density of 8 Gaussians.

The same MLP energy is trained with ``eb.fit`` by persistent contrastive divergence (Langevin
negatives from a replay buffer), noise-contrastive estimation (uniform noise with its density)
and denoising score matching (no negatives at all). Each learned P(y) ∝ exp(−F(y)) should put
its mass on the eight modes.
Run: ``python examples/train_2d_density.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ebmlab as eb
from ebmlab.training.negatives import Sampled, Uniform


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="figure folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps = 60 if args.quick else 1500
    box = eb.Box([-3.5, -3.5], [3.5, 3.5])
    data = eb.data.eight_gaussians(4000, generator=torch.Generator().manual_seed(0))
    recipes = {
        "contrastive divergence": dict(
            loss="contrastive_divergence",
            negatives=Sampled(num_steps=10, step_size=0.01, init="buffer", domain=box),
            regularizer=lambda e_pos, e_neg: 0.1 * eb.losses.energy_l2(e_pos, e_neg)),
        "NCE": dict(loss="nce", negatives=Uniform(box, num=4)),
        "denoising score matching": dict(loss="denoising_score_matching",
                                         loss_options={"sigma": 0.1}),
    }
    fig, axes = eb.plot.subplots(len(recipes), title="One MLP energy, three losses: learned "
                                 "P(y) ∝ exp(−F(y)) on 8 Gaussians")
    masses = {}
    means = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.2).means.detach()
    for ax, (name, recipe) in zip(axes, recipes.items(), strict=True):
        torch.manual_seed(0)
        energy = eb.energies.MLPEnergy(2, hidden=(64, 64))
        eb.fit(energy, data, optimizer=torch.optim.Adam(energy.parameters(), lr=2e-3),
               num_steps=steps, batch_size=256, log_every=steps, progress=False,
               generator=torch.Generator().manual_seed(1), **recipe)
        p = eb.Gibbs(energy.eval(), domain=box)
        # Probability mass within 0.5 of a mode (the data put about 99 % there).
        grid = box.grid(100)
        near = torch.cdist(grid.points, means)
        inside = near.min(-1).values < 0.5
        with torch.no_grad():
            mass = float(p.log_prob(grid.points).exp()[inside].sum() * box.volume / 100**2)
        masses[name] = mass
        eb.plot.density(p, num=60 if args.quick else 150, ax=ax)
        ax.scatter(data[:300, 0], data[:300, 1], s=2, c="cyan", alpha=0.5)
        ax.set_title(f"{name}: {mass:.0%} of the mass near a mode", fontsize=9)
        print(f"{name:<25} P(within 0.5 of a mode) = {mass:.3f} after {steps} steps")
    print("figure:", eb.plot.save(fig, args.out / "train_2d_density.png"))
    return masses


if __name__ == "__main__":
    main()
