"""The multi-start engine: N independent minimisations run as one batched program.

``eb.infer``, joint (y, z) inference, ``eb.latent.Minimize``, ``MostOffending`` and the
sharded helpers all minimise through :func:`minimize`, draw their starts with :func:`starts`
and turn end points into an :class:`ebmlab.Inference` with :func:`assemble`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlab._checks import check_tensor
from ebmlab.domain import Box
from ebmlab.inference.adam import Adam
from ebmlab.inference.gradient_descent import GradientDescent
from ebmlab.inference.lbfgs import LBFGS
from ebmlab.inference.merge import merge_minima
from ebmlab.inference.result import Inference
from ebmlab.inference.solver import Objective, Solver, SolverState

__all__ = ["SOLVERS", "resolve_solver", "Minimization", "minimize", "starts", "assemble"]

SOLVERS: dict[str, Callable[[], Solver]] = {
    "adam": Adam,
    "gd": GradientDescent,
    "lbfgs": LBFGS,
}


def resolve_solver(solver: Solver | str | None) -> Solver:
    """Return a solver instance from ``None`` (Adam), a registry name or an instance."""
    if solver is None:
        return Adam()
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)} or a solver; got {solver!r}")
        return SOLVERS[solver]()
    if not (hasattr(solver, "init") and hasattr(solver, "step")):
        raise TypeError(f"solver must have init() and step(); got {type(solver).__name__}")
    return solver


@dataclass(frozen=True)
class Minimization:
    """End points of N independent minimisations (see :func:`minimize`)."""

    y: Tensor
    energy: Tensor
    is_converged: Tensor
    is_diverged: Tensor
    num_steps: int
    trajectory: Tensor | None


def _select(state: SolverState, keep: Tensor) -> SolverState:
    return {k: (v[keep] if isinstance(v, Tensor) and v.ndim > 0 else v) for k, v in state.items()}


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
) -> Minimization:
    r"""Run ``solver`` on N problems until each converges or ``max_steps`` is reached.

    A problem has converged when its projected gradient norm is at most ``gtol`` or its
    energy changed by at most ``ftol * (1 + |F|)`` over the last ``check_every`` steps.
    Convergence is tested every ``check_every`` steps (one host synchronisation each);
    converged and diverged (non-finite) problems are then removed from the working set, so
    the remaining steps cost only what is still active.
    """
    n = y0.shape[0]
    y = objective.project(y0)
    energy, grad = objective(y)
    state = solver.init(y, energy, grad)
    out_y, out_e = y.clone(), energy.clone()
    is_converged = torch.zeros(n, dtype=torch.bool, device=y.device)
    is_diverged = torch.zeros_like(is_converged)
    index = torch.arange(n, device=y.device)
    x_full = objective.x
    trajectory = [y.clone()] if is_trajectory else None
    e_check = energy
    steps = 0
    while steps < max_steps:
        y, energy, grad, state = solver.step(y, energy, grad, state, objective)
        steps += 1
        if trajectory is not None:
            trajectory.append(out_y.index_copy(0, index, y))
        if not is_early_stop or (steps % check_every and steps < max_steps):
            continue
        flat_g = (y - objective.project(y - grad)).reshape(y.shape[0], -1)
        is_bad = ~(torch.isfinite(energy) & torch.isfinite(flat_g).all(-1))
        is_done = (flat_g.norm(dim=-1) <= gtol) | (
            (energy - e_check).abs() <= ftol * (1 + energy.abs())
        )
        is_done = is_done & ~is_bad
        leaving = is_done | is_bad
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
        e_check = energy
    objective.x = x_full
    if index.numel():
        out_y[index] = y
        out_e[index] = energy
        if not is_early_stop:
            flat_g = (y - objective.project(y - grad)).reshape(y.shape[0], -1)
            is_converged[index] = flat_g.norm(dim=-1) <= gtol
        is_diverged[index] = ~torch.isfinite(energy)
    traj = torch.stack(trajectory) if trajectory is not None else None
    return Minimization(out_y, out_e, is_converged, is_diverged, steps, traj)


def starts(
    b: int,
    s: int,
    y_shape: tuple[int, ...],
    domain: Box | None,
    init: Tensor | None,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
    init_scale: float,
) -> Tensor:
    """Return the (B·S, *y_shape) starting points: ``init``, uniform in ``domain`` or Gaussian.

    ``init`` is (S, *y_shape), shared by the B inputs, or (B, S, *y_shape); without it the
    starts are uniform in ``domain``, or Gaussian with standard deviation ``init_scale``.
    """
    if init is not None:
        check_tensor(init, "init")
        if tuple(init.shape) == (s, *y_shape):
            init = init.unsqueeze(0).expand(b, *init.shape)
        if tuple(init.shape) != (b, s, *y_shape):
            raise ValueError(
                f"init has shape {tuple(init.shape)}; expected (num_starts, *y_shape) = "
                f"{(s, *y_shape)} or (B, num_starts, *y_shape) = {(b, s, *y_shape)}"
            )
        return init.to(dtype=dtype, device=device).reshape(b * s, *y_shape)
    if domain is not None:
        return domain.sample(b * s, generator=generator, dtype=dtype, device=device)
    noise = torch.randn((b * s, *y_shape), generator=generator, dtype=dtype, device=device)
    return init_scale * noise


def assemble(
    run: Minimization, b: int, s: int, shape: tuple[int, ...], merge_tol: float
) -> Inference:
    """Merge the end points of ``run`` (B·S problems) into an :class:`Inference`."""
    d = math.prod(shape)
    points = run.y.reshape(b, s, d)
    e = run.energy.reshape(b, s)
    is_diverged = run.is_diverged.reshape(b, s)
    is_converged = run.is_converged.reshape(b, s)
    # Unconverged end points are counted in num_unconverged; they are merged as minima only
    # for inputs where no start converged (and then flagged converged=False).
    is_kept = ~is_diverged & (is_converged | ~is_converged.any(1, keepdim=True))
    order, is_minimum, count, e_sorted = merge_minima(points, e, is_kept, merge_tol)
    if bool((count == 0).any()):
        bad = torch.nonzero(count == 0).flatten().tolist()
        raise ValueError(
            f"every start diverged (non-finite energy or gradient) for inputs {bad[:10]}; "
            "check the energy for NaN/inf or use a domain"
        )
    k = int(count.max())
    # Stable sort of the flags puts the accepted minima first, still in energy order.
    rank = torch.sort((~is_minimum).to(torch.int8), dim=1, stable=True).indices[:, :k]
    pick = torch.gather(order, 1, rank)  # (B, K) indices of starts
    valid = torch.arange(k, device=count.device).unsqueeze(0) < count.unsqueeze(1)
    pick = torch.where(valid, pick, pick[:, :1])
    y = torch.gather(points, 1, pick.unsqueeze(-1).expand(b, k, d)).reshape(b, k, *shape)
    energy = torch.gather(e_sorted, 1, rank)
    energy = torch.where(valid, energy, torch.full_like(energy, float("inf")))
    converged = torch.gather(is_converged, 1, pick) & valid
    num_unconverged = (~is_converged & ~is_diverged).sum(1)
    traj = None
    if run.trajectory is not None:
        traj = run.trajectory.reshape(run.trajectory.shape[0], b, s, *shape)
    return Inference(
        y=y,
        energy=energy,
        valid=valid,
        count=count,
        converged=converged,
        num_steps=run.num_steps,
        num_unconverged=num_unconverged,
        num_diverged=is_diverged.sum(1),
        trajectory=traj,
    )
