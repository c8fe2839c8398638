"""Plots of implicit models: predicted modes over 1-D data, and particle-task trajectories."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.patches import Circle

from ebmlab.plot.figure import axes_or_new

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["implicit_modes", "particle_trajectories"]


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().double().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def implicit_modes(
    x: Any,
    y: Any,
    x_grid: Any,
    modes: Any,
    *,
    baselines: Mapping[str, Any] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw 1-D data, the modes an implicit model infers on a grid, and baseline predictions.

    Args:
        x, y: the training pairs, (N,) or (N, 1) each.
        x_grid: the inputs the models were queried at, (G,) or (G, 1).
        modes: an :class:`ebmlab.Inference` for ``x_grid`` (y (G, K, 1)), as returned by
            ``ImplicitRegressor.predict_modes``; the best mode is drawn darker.
        baselines: name -> predictions at ``x_grid``, (G,) for a curve or (G, M) for M
            points per input (e.g. a mixture density network's component means).
        ax: axes to draw on (a new figure by default).
        title: the axes title.

    Returns:
        The axes.

    Example:
        >>> import numpy as np, torch, ebmlab as eb
        >>> from ebmlab.inference import Inference
        >>> grid = np.linspace(0, 1, 5)
        >>> modes = Inference(y=torch.zeros(5, 2, 1), energy=torch.zeros(5, 2),
        ...                   valid=torch.ones(5, 2, dtype=torch.bool), count=torch.full((5,), 2),
        ...                   converged=torch.ones(5, 2, dtype=torch.bool), num_steps=1,
        ...                   num_unconverged=torch.zeros(5), num_diverged=torch.zeros(5))
        >>> ax = eb.plot.implicit_modes(grid, grid, grid, modes, baselines={"MSE": grid})
        >>> len(ax.get_legend().get_texts())
        4
    """
    ax = axes_or_new(ax, figsize=(5.0, 4.0))
    xg = _numpy(x_grid).reshape(-1)
    ax.scatter(_numpy(x).reshape(-1), _numpy(y).reshape(-1), s=4, color="0.75", label="data",
               rasterized=True)
    my = _numpy(modes.y)[..., 0]  # (G, K)
    valid = _numpy(modes.valid).astype(bool)
    cols = np.broadcast_to(xg[:, None], my.shape)
    rest = valid.copy()
    rest[:, 0] = False
    ax.scatter(cols[rest], my[rest], s=6, color="tab:orange", alpha=0.6, label="other modes")
    ax.scatter(xg, my[:, 0], s=8, color="tab:red", label="implicit (best mode)")
    colours = iter(["tab:blue", "tab:green", "tab:purple", "tab:brown"])
    for name, pred in (baselines or {}).items():
        p = _numpy(pred)
        colour = next(colours, "k")
        if p.ndim == 1 or p.shape[-1] == 1:
            ax.plot(xg, p.reshape(-1), color=colour, lw=1.8, label=name)
        else:
            ax.scatter(np.broadcast_to(xg[:, None], p.shape), p, s=4, color=colour,
                       marker="x", label=name)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=7, loc="best", markerscale=2)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def particle_trajectories(
    rollout: Any,
    *,
    tolerance: float = 0.05,
    num: int = 6,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw the first ``num`` episodes of an :class:`ebmlab.envs.Rollout` in the unit square.

    Goal 1 is green, goal 2 blue (with the tolerance circles); a path is solid when its
    episode succeeded and dashed when it failed.

    Example:
        >>> import torch, ebmlab as eb
        >>> env = eb.envs.Particle(3)
        >>> r = eb.envs.rollout(env, eb.envs.ParticleOracle(env), generator=torch.Generator())
        >>> len(eb.plot.particle_trajectories(r).patches)  # two goal circles per episode
        6
    """
    ax = axes_or_new(ax, figsize=(4.5, 4.5))
    paths = _numpy(rollout.positions)  # (T + 1, E, 2)
    goals = _numpy(rollout.goals)  # (E, 2, 2)
    success = _numpy(rollout.is_success).astype(bool)
    colours = [f"C{i % 10}" for i in range(num)]
    for e in range(min(num, paths.shape[1])):
        c = colours[e]
        ax.plot(paths[:, e, 0], paths[:, e, 1], color=c, lw=1.2,
                ls="-" if success[e] else "--")
        ax.plot(*paths[0, e], marker="o", color=c, ms=3)
        for g, colour in ((0, "tab:green"), (1, "tab:blue")):
            ax.add_patch(Circle(goals[e, g], tolerance, fill=False, color=colour, lw=1))
            ax.text(*goals[e, g], str(g + 1), color=colour, fontsize=7, ha="center",
                    va="center")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return ax
