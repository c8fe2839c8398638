"""Demo section "spine": every minimum of multi-well landscapes, and the implicit function."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

import ebmlab as eb
from ebmlab.demo.progress import advance
from ebmlab.training.negatives import Uniform

__all__ = ["run", "STEPS"]

STEPS = 5  # two landscapes, the learned energy, the regressor, the figure


def _fit_regressor(x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    # A plain feed-forward MSE regressor: the explicit function the lecture contrasts with.
    # Full batch and a decaying step size, so that it reaches its optimum, E[y | x] (about 0
    # here, the average of the two branches), instead of a jagged curve through the noise.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        schedule.step()
    return net


def _learn_energy(x: torch.Tensor, y: torch.Tensor, box: eb.Box, steps: int) -> eb.Energy:
    """Learn F(x, y) from the data by NCE against uniform noise on the box."""
    torch.manual_seed(0)
    energy = eb.energies.MLPEnergy(1, x_dim=1, hidden=(64, 64))
    eb.fit(energy, (x, y), "nce", negatives=Uniform(box, num=16),
           optimizer=torch.optim.Adam(energy.parameters(), lr=3e-3), num_steps=steps,
           batch_size=256, log_every=steps, progress=False,
           generator=torch.Generator().manual_seed(1))
    return energy.eval()


def run(out: Path, quick: bool) -> list[str]:
    """Draw the inference figures (``spine_*.png``) into ``out``; return the summary lines."""
    gen = torch.Generator().manual_seed(0)
    rows = []

    # 1. Multi-well landscapes: every minimum, found from uniform starts, with the paths.
    cases = [
        ("DoubleWell(2)", eb.energies.DoubleWell(2), eb.Box([-2.0, -2.0], [2.0, 2.0]), 4),
        ("8 Gaussians", eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.35),
         eb.Box([-3.0, -3.0], [3.0, 3.0]), 8),
    ]
    fig, axes = eb.plot.subplots(len(cases), title="Inference finds every minimum")
    for ax, (name, energy, box, expected) in zip(axes, cases, strict=True):
        start = time.perf_counter()
        res = eb.infer(energy, domain=box, num_starts=64, generator=gen, return_trajectory=True,
                       solver=eb.inference.Adam(lr=0.03), max_steps=300 if quick else 800)
        seconds = time.perf_counter() - start
        eb.plot.landscape(energy, domain=box, ax=ax, num=120 if quick else 240, colorbar=False)
        eb.plot.modes(res, ax=ax)
        ax.set_title(f"{name}: {int(res.count[0])} minima")
        rows.append((name, int(res.count[0]), expected, res.num_steps, seconds))
        advance(name)
    eb.plot.save(fig, out / "spine_minima.png")

    # 2. The implicit function y^2 = x: two answers per x. An EBM learned from the data
    # keeps both branches; an MSE regressor averages them to ~0.
    x, y = eb.data.two_branch(200 if quick else 600, scale=0.05, generator=gen)
    y_box = eb.Box([-2.5], [2.5])
    start = time.perf_counter()
    energy = _learn_energy(x, y, y_box, 300 if quick else 1500)
    advance("regressor")
    xs = torch.linspace(0.05, 4.0, 40).unsqueeze(-1)
    res = eb.infer(energy, x=xs, domain=y_box, num_starts=16, generator=gen, merge_tol=0.05)
    seconds = time.perf_counter() - start
    regressor = _fit_regressor(x, y, 300 if quick else 1000)
    advance("figure")
    fig, axes = eb.plot.subplots(2, title="An EBM is an implicit function: data on y² = x")
    eb.plot.conditional(energy, x_range=(0.0, 4.2), y_range=(-2.5, 2.5), ax=axes[0],
                        num=100 if quick else 200)
    axes[0].set_title("MLP energy F(x, y) learned by NCE")
    ax = axes[1]
    ax.scatter(x[:, 0], y[:, 0], s=6, c="0.6", label="data")
    for k in range(int(res.count.max())):
        ok = res.valid[:, k]
        ax.scatter(xs[ok, 0], res.y[ok, k, 0], s=14, c="tab:red",
                   label="EBM: argmin_y F(x, y)" if k == 0 else None)
    with torch.no_grad():
        ax.plot(xs[:, 0], regressor(xs)[:, 0], c="tab:blue", lw=2, label="MSE regressor")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("both branches vs the regressor's average")
    eb.plot.save(fig, out / "spine_implicit.png")
    advance("done")
    branches = int((res.count == 2).sum())
    rows.append(("y² = x (40 inputs)", branches, len(xs), res.num_steps, seconds))

    lines = [f"{'problem':<22}{'found':>7}{'expected':>10}{'steps':>7}{'time (s)':>10}"]
    lines += [f"{n:<22}{f:>7}{e:>10}{s:>7}{t:>10.3f}" for n, f, e, s, t in rows]
    lines.append("(for y² = x: inputs where both branches ±√x were found by inference on the "
                 "energy learned from the data; its time includes training)")
    return lines
