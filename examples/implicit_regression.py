"""Implicit regression in five lines: every branch of a multi-valued relation, with its energy.

y = ±√x has two answers per input; least squares predicts their average (0, never right),
an ImplicitRegressor keeps both as minima of E(x, y), and its score is a log-likelihood.

    python examples/implicit_regression.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import ebmlab as eb
from ebmlab.demo.implicit import GaussianRegressor, MixtureDensityNetwork


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=None, help="folder for the figure")
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    args = parser.parse_args(argv)
    steps = 40 if args.quick else args.steps
    torch.set_num_threads(1)

    # The five lines:
    x, y = eb.data.two_branch(1000, generator=torch.Generator().manual_seed(0))
    model = eb.ImplicitRegressor(max_iter=steps, random_state=0).fit(x.numpy(), y.numpy())
    modes = model.predict_modes([[1.0], [4.0]])  # both branches: about -1, 1 and -2, 2
    draws = model.sample([[4.0]], n_samples=5, random_state=0)  # from p(y|x) ∝ exp(-E)
    log_likelihood = model.score(x.numpy(), y.numpy())  # mean log p(y|x), nats

    for b, xv in enumerate((1.0, 4.0)):
        found = modes.minima(b)[:, 0].tolist()
        print(f"x = {xv}: modes {[round(v, 3) for v in found]}, energies "
              f"{[round(v, 2) for v in modes.energy[b, :len(found)].tolist()]}")
    print(f"samples at x = 4: {np.round(draws[0, :, 0], 2).tolist()}")
    print(f"mean log-likelihood on the training set: {log_likelihood:.3f} nats")
    if args.out is not None:
        grid = torch.linspace(0, 4, 100)[:, None]
        mse = GaussianRegressor(num_steps=steps).fit(x, y)
        mdn = MixtureDensityNetwork(5, num_steps=steps).fit(x, y)
        ax = eb.plot.implicit_modes(x, y, grid, model.predict_modes(grid.numpy(), max_modes=3),
                                    baselines={"MSE": mse.predict(grid)[:, 0],
                                               "MDN modes": mdn.modes(grid)},
                                    title="y = ±√x: implicit vs MSE vs MDN")
        eb.plot.save(ax.figure, args.out / "implicit_regression.png")
    return {"modes": [modes.minima(b)[:, 0].tolist() for b in range(2)],
            "log_likelihood": log_likelihood}


if __name__ == "__main__":
    main()
