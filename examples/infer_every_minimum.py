"""Inference of every minimum: multi-start descent finds all wells of multi-modal energies.

``eb.infer`` starts many descents (uniform in the box), merges the end points that reached the
same well, and returns every distinct minimum with its energy and how many starts found it.
Run: ``python examples/infer_every_minimum.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ebmlab as eb


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="figure folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    cases = {
        "DoubleWell(2)": (eb.energies.DoubleWell(2), eb.Box([-2.0, -2.0], [2.0, 2.0])),
        "8 Gaussians": (eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.35),
                        eb.Box([-3.0, -3.0], [3.0, 3.0])),
        "Banana": (eb.energies.Banana(), eb.Box([-3.0, -4.0], [3.0, 2.0])),
    }
    fig, axes = eb.plot.subplots(len(cases), title="eb.infer: every minimum from 64 starts")
    found = {}
    for ax, (name, (energy, box)) in zip(axes, cases.items(), strict=True):
        result = eb.infer(energy, domain=box, num_starts=64, generator=gen,
                          return_trajectory=True, max_steps=200 if args.quick else 800)
        found[name] = int(result.count[0])
        eb.plot.landscape(energy, domain=box, ax=ax, num=60 if args.quick else 200)
        eb.plot.modes(result, ax=ax)
        ax.set_title(f"{name}: {found[name]} minim{'um' if found[name] == 1 else 'a'}")
        for k in range(found[name]):
            y = [round(v, 3) for v in result.y[0, k].tolist()]
            print(f"{name:<14} minimum {k}: y = {y}, F = {float(result.energy[0, k]):.4f}, "
                  f"found by {int(result.hits[0, k])} starts")
    print("figure:", eb.plot.save(fig, args.out / "infer_every_minimum.png"))
    return found


if __name__ == "__main__":
    main()
