"""Train the course's ellipse by the energy loss, at zero and at finite temperature.

The latent-variable energy E(y, z) = ‖y − [w₁ cos z, w₂ sin z]‖² with z on the grid k·π/24
is fitted to the course's 24 noisy points of the ellipse (2 cos θ, 1.5 sin θ) by minimising
the mean free energy over the data with a plain Adam loop, once with F_∞ = min_z E and once
with F_β (β = 10). Run: ``python examples/train_ellipse.py [--quick] [--steps N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import ebmlab as eb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="a small, fast run (60 steps)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="figure folder")
    args = parser.parse_args()
    if args.quick:
        args.steps = 60
    torch.set_default_dtype(torch.float64)
    y = eb.data.ellipse(24, generator=torch.Generator().manual_seed(0))
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    models = {}
    for beta in (math.inf, 10.0):
        model = eb.energies.Ellipse(w=(1.0, 1.0))
        free = eb.FreeEnergy(model, grid, beta=beta)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(args.steps):
            optimizer.zero_grad()
            loss = free(y).mean()  # the energy loss: pull the free energy down on the data
            loss.backward()
            optimizer.step()
        name = "inf" if math.isinf(beta) else f"{beta:g}"
        print(f"beta={name}: w = {[round(v, 3) for v in model.w.tolist()]}, "
              f"mean F = {float(loss):.4f}  (data generated with w = (2, 1.5))")
        models[name] = model
    if args.out is not None:  # the figure
        fig, axes = eb.plot.subplots(2)
        for ax, (name, model) in zip(axes, models.items(), strict=True):
            eb.plot.free_energy_map(eb.FreeEnergy(model, grid), data=y,
                                    manifold=eb.manifold(model, grid)[0], ax=ax, num=61)
            ax.set_title(f"trained at beta={name}")
        print("figure:", eb.plot.save(fig, args.out / "train_ellipse.png"))


if __name__ == "__main__":
    main()
