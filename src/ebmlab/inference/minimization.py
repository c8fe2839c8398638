"""The batched minimisation loop: N independent problems stepped together until each stops.

:func:`minimize` is the loop every multi-start inference runs (``eb.infer``, joint inference,
``eb.latent.Minimize``, the re-descent of :func:`ebmlab.inference.assembly.assemble`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlab.inference.solver import Objective, Solver, SolverState

__all__ = [
    "Minimization",
    "minimize",
    "group_scales",
    "projected_grad",
    "projected_grad_norm",
    "start_scales",
    "stop_test",
]


@dataclass(frozen=True)
class Minimization:
    """End points of N independent minimisations (see :func:`minimize`)."""

    y: Tensor
    energy: Tensor
    is_converged: Tensor
    is_diverged: Tensor
    num_steps: int
    trajectory: Tensor | None
    gscale: Tensor | None = None
    fscale: Tensor | None = None


def _select(state: SolverState, keep: Tensor) -> SolverState:
    return {k: (v[keep] if isinstance(v, Tensor) and v.ndim > 0 else v) for k, v in state.items()}


def group_scales(energy: Tensor, grad_norm: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Per-problem scales of the gradient and of the energy, from the starts of each group.

    ``energy`` and ``grad_norm`` are (N,) at the N = G × ``groups`` starts, group-major. The
    gradient scale of a group is the median gradient norm of its starts (robust to starts
    that run off), the energy scale the
    median absolute deviation of their energies (each 1 where it is 0 or undefined), so that
    the tolerances of :func:`minimize` are relative to the energy's own scale: multiplying F
    by a constant changes nothing.

    Returns:
        ``(gscale, fscale)``, both (N,), repeated over the starts of each group.
    """
    e = torch.where(torch.isfinite(energy), energy, torch.full_like(energy, float("nan")))
    g = torch.where(torch.isfinite(grad_norm), grad_norm, torch.full_like(grad_norm, float("nan")))
    e, g = e.reshape(-1, groups), g.reshape(-1, groups)
    gscale = g.nanmedian(1).values
    fscale = (e - e.nanmedian(1, keepdim=True).values).abs().nanmedian(1).values
    amax = e.abs().nan_to_num(0.0).amax(1)
    fscale = torch.where(fscale > 0, fscale, amax)

    def fill(v: Tensor) -> Tensor:
        ok = torch.isfinite(v) & (v > 0)
        return torch.where(ok, v, torch.ones_like(v)).repeat_interleave(groups)

    return fill(gscale), fill(fscale)


def projected_grad(y: Tensor, grad: Tensor, objective: Objective) -> Tensor:
    """The projected gradient ``y - P(y - g)``, exact where no bound is active.

    Coordinates that the projection leaves alone keep ``g`` itself: in floating point
    ``y - (y - g)`` loses a gradient much smaller than ``|y|``.
    """
    step = y - grad
    p = objective.project(step)
    return torch.where(p != step, y - p, grad)


def projected_grad_norm(y: Tensor, grad: Tensor, objective: Objective) -> Tensor:
    """(N,) norms of :func:`projected_grad`."""
    return projected_grad(y, grad, objective).reshape(y.shape[0], -1).norm(dim=-1)


def start_scales(
    y: Tensor, energy: Tensor, grad: Tensor, objective: Objective, gtol: float,
    groups: int | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(g_scale, f_scale, gtol · g_scale) at the start point: :func:`group_scales`, else ones."""
    if groups is not None:
        gscale, fscale = group_scales(energy, projected_grad_norm(y, grad, objective), groups)
    else:
        gscale = torch.ones(y.shape[0], dtype=energy.dtype, device=energy.device)
        fscale = gscale
    return gscale, fscale, gtol * gscale


def stop_test(
    y: Tensor, energy: Tensor, grad: Tensor, y_prev: Tensor, e_prev: Tensor,
    objective: Objective, *, ftol: float, gtol: float, gscale: Tensor, fscale: Tensor,
    gtol_n: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """The stopping rule of :func:`minimize` for the rows given: (is_done, is_bad, is_stalled).

    ``gscale``, ``fscale`` and ``gtol_n`` are those rows' scales (:func:`start_scales`);
    ``is_done`` excludes the non-finite rows (``is_bad``).
    """
    n = y.shape[0]
    flat_g = projected_grad(y, grad, objective).reshape(n, -1)
    is_bad = ~(torch.isfinite(energy) & torch.isfinite(flat_g).all(-1))
    moved = (y - y_prev).reshape(n, -1).norm(dim=-1)
    size = y.reshape(n, -1).norm(dim=-1)
    is_stalled = ((energy - e_prev).abs() <= ftol * (energy.abs() + fscale)) & (
        moved <= math.sqrt(ftol) * (1 + size)
    )
    g_norm = flat_g.norm(dim=-1)
    is_done = (g_norm <= gtol_n) | (is_stalled & (g_norm <= math.sqrt(gtol) * gscale))
    return is_done & ~is_bad, is_bad, is_stalled


def minimize(
    objective: Objective,
    y0: Tensor,
    solver: Solver,
    *,
    max_steps: int,
    gtol: float,
    ftol: float,
    check_every: int = 10,
    is_early_stop: bool = True,
    is_trajectory: bool = False,
    groups: int | None = None,
) -> Minimization:
    r"""Run ``solver`` on N problems until each converges or ``max_steps`` is reached.

    A problem has converged when its projected gradient norm is at most ``gtol · g_scale``.
    It stops when it has stalled: over the last step (consecutive steps, so that
    oscillations and 2-cycles never pass) the energy changed by at most
    ``ftol · (|F| + f_scale)`` *and* the point moved by at most ``sqrt(ftol) · (1 + |y|)``;
    a stalled problem counts as converged only if its gradient norm is at most
    ``sqrt(gtol) · g_scale`` (a slow solver at the bottom), else it stops unconverged (a
    line search that cannot progress). Without ``groups`` the scales are 1
    (absolute tolerances); with ``groups`` (the N problems are N / groups inputs of
    ``groups`` starts each) they are those of :func:`group_scales`, relative to the energy.

    Convergence is tested every ``check_every`` steps (one host synchronisation each);
    converged and diverged (non-finite) problems are then removed from the working set, so
    the remaining steps cost only what is still active.
    """
    n = y0.shape[0]
    y = objective.project(y0.detach())
    energy, grad = objective(y)
    gscale, fscale, gtol_n = start_scales(y, energy, grad, objective, gtol, groups)
    state = solver.init(y, energy, grad)
    out_y, out_e = y.clone(), energy.clone()
    is_converged = torch.zeros(n, dtype=torch.bool, device=y.device)
    is_diverged = torch.zeros_like(is_converged)
    index = torch.arange(n, device=y.device)
    x_full = objective.x
    trajectory = [y.clone()] if is_trajectory else None
    y_prev, e_prev = y, energy
    steps = 0
    while steps < max_steps:
        if is_early_stop and ((steps + 1) % check_every == 0 or steps + 1 == max_steps):
            y_prev, e_prev = y, energy  # the state one step before the next check
        y, energy, grad, state = solver.step(y, energy, grad, state, objective)
        steps += 1
        if trajectory is not None:
            trajectory.append(out_y.index_copy(0, index, y))
        if not is_early_stop or (steps % check_every and steps < max_steps):
            continue
        is_done, is_bad, is_stalled = stop_test(
            y, energy, grad, y_prev, e_prev, objective, ftol=ftol, gtol=gtol,
            gscale=gscale[index], fscale=fscale[index], gtol_n=gtol_n[index],
        )
        leaving = is_done | is_bad | is_stalled
        if bool(leaving.any()):
            out_y[index[leaving]] = y[leaving]
            out_e[index[leaving]] = energy[leaving]
            is_converged[index[is_done]] = True
            is_diverged[index[is_bad]] = True
            keep = ~leaving
            index, y, energy, grad = index[keep], y[keep], energy[keep], grad[keep]
            state = _select(state, keep)
            objective.x = None if x_full is None else x_full[index]
            if index.numel() == 0:
                break
    objective.x = x_full
    if index.numel():
        out_y[index] = y
        out_e[index] = energy
        if not is_early_stop:
            is_converged[index] = projected_grad_norm(y, grad, objective) <= gtol_n[index]
        is_diverged[index] = ~torch.isfinite(energy)
    traj = torch.stack(trajectory) if trajectory is not None else None
    scales = (gscale, fscale) if groups is not None else (None, None)
    return Minimization(out_y, out_e, is_converged, is_diverged, steps, traj, *scales)

