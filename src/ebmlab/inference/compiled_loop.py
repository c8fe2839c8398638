"""``compile=`` for inference: the batched minimisation run in compiled blocks of solver steps.

:func:`minimize_compiled` is :func:`ebmlab.inference.minimization.minimize` with the solver's
steps between two convergence checks fused into one ``torch.compile``\\ d call
(:func:`ebmlab._compile.compiled`, which falls back to eager with one ``UserWarning`` when
compilation fails). The working set keeps one shape for the whole run (problems that stop are
frozen, not removed), so the block compiles once per run size instead of once per shrink, and
a CUDA graph can be replayed; :func:`functional_energy_and_grad` replaces an autograd gradient
(a graph break for the compiler) by ``torch.func.grad``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab._compile import compiled
from ebmlab.inference.minimization import (
    Minimization,
    projected_grad_norm,
    start_scales,
    stop_test,
)
from ebmlab.inference.solver import Objective, Solver, SolverState

__all__ = [
    "functional_energy_and_grad",
    "functional_latent_energy_and_grad",
    "solver_block",
    "compiled_block",
    "minimize_compiled",
    "tensor_counters",
]

EnergyAndGrad = Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]]


def functional_energy_and_grad(forward: Callable[[Tensor, Tensor | None], Tensor]) -> EnergyAndGrad:
    """Return ``(y, x) -> (F, dF/dy)`` by ``torch.func.grad`` of ``forward``: traceable whole.

    The same values as the autograd gradient of :meth:`ebmlab.Energy.energy_and_grad`, but
    the compiler traces it into the step's graph instead of breaking the graph at
    ``torch.autograd.grad``.

    Example:
        >>> import torch
        >>> fn = functional_energy_and_grad(lambda y, x: (y**2).sum(-1))
        >>> fn(torch.tensor([[1.0, 2.0]]), None)
        (tensor([5.]), tensor([[2., 4.]]))
    """

    def energy_and_grad(y: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor]:
        def total(v: Tensor) -> tuple[Tensor, Tensor]:
            e = forward(v, x)
            return e.sum(), e

        g, e = torch.func.grad(total, has_aux=True)(y)
        return e.detach(), g

    return energy_and_grad


def functional_latent_energy_and_grad(
    forward: Callable[[Tensor, Tensor, Tensor | None], Tensor],
) -> Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor, Tensor]]:
    """Return ``(y, z, x) -> (E, dE/dy, dE/dz)`` by ``torch.func.grad`` (see above).

    Example:
        >>> import torch
        >>> fn = functional_latent_energy_and_grad(lambda y, z, x: (y * z).sum(-1))
        >>> fn(torch.tensor([[1.0]]), torch.tensor([[3.0]]), None)
        (tensor([3.]), tensor([[3.]]), tensor([[1.]]))
    """

    def energy_and_grad(y: Tensor, z: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        def total(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
            e = forward(u, v, x)
            return e.sum(), e

        (gy, gz), e = torch.func.grad(total, argnums=(0, 1), has_aux=True)(y, z)
        return e.detach(), gy, gz

    return energy_and_grad


def solver_block(
    solver: Solver,
    energy_and_grad: EnergyAndGrad,
    project: Callable[[Tensor], Tensor] | None,
    x: Tensor | None,
    y: Tensor,
    energy: Tensor,
    grad: Tensor,
    state: SolverState,
    num_steps: int,
    is_trajectory: bool,
) -> tuple[Tensor, Tensor, Tensor, SolverState, Tensor, Tensor, list[Tensor]]:
    """Run ``num_steps`` solver steps; also return the point and energy one step before the end.

    The function that :func:`compiled_block` compiles: a module-level function, so that the
    compiled code is cached across calls with the same solver and energy.

    Returns:
        ``(y, energy, grad, state, y_prev, energy_prev, path)``; ``path`` holds every
        iterate when ``is_trajectory``, else it is empty.
    """
    objective = Objective(energy_and_grad, x, project)
    path: list[Tensor] = []
    y_prev, e_prev = y, energy
    for _ in range(num_steps):
        y_prev, e_prev = y, energy
        y, energy, grad, state = solver.step(y, energy, grad, state, objective)
        if is_trajectory:
            path.append(y)
    return y, energy, grad, state, y_prev, e_prev, path


def compiled_block(mode: str) -> Callable:
    """Return :func:`solver_block` through :func:`ebmlab._compile.compiled` in ``mode``.

    ``dynamic=None``: the solver's step counters (Adam's ``t``, L-BFGS's ``count``) become
    symbolic after one recompilation instead of recompiling at every block.
    ``merge_repeated``: what every step of the block recomputes from the inputs that do not
    change along it (an MLP's ``x`` columns of the first layer) runs once per block
    (:class:`ebmlab._compile.MergeRepeatedWork`).
    """
    return compiled(solver_block, mode=mode, what="inference solver steps", dynamic=None,
                    merge_repeated=True)


def tensor_counters(state: SolverState, solver: Solver, device: torch.device) -> SolverState:
    """The solver's step counters (its ``counters``, e.g. Adam's ``t``) as 0-d float64 tensors.

    A Python int that changes between compiled calls makes the compiler specialise on it,
    then recompile once with a symbolic int; a tensor is an ordinary input, so the block
    compiles once. Counters that set shapes or branches (L-BFGS's ``count``, Hybrid's
    ``phase_t``) stay ints, and so does every entry of a solver without ``counters``.

    Example:
        >>> import ebmlab as eb
        >>> tensor_counters({"t": 0, "m": None}, eb.inference.Adam(), torch.device("cpu"))
        {'t': tensor(0., dtype=torch.float64), 'm': None}
    """
    names = [k for k in getattr(solver, "counters", ()) if isinstance(state.get(k), int)]
    if not names:
        return state
    return {**state, **{k: torch.tensor(float(state[k]), dtype=torch.float64, device=device)
                        for k in names}}


def minimize_compiled(
    objective: Objective,
    y0: Tensor,
    solver: Solver,
    *,
    block: Callable,
    max_steps: int,
    gtol: float,
    ftol: float,
    check_every: int = 10,
    is_early_stop: bool = True,
    is_trajectory: bool = False,
    groups: int | None = None,
) -> Minimization:
    """:func:`ebmlab.inference.minimization.minimize` with its steps in compiled blocks.

    The stopping rule, the scales and the returned record are those of ``minimize``; the
    steps between two checks (``check_every``) run as one call of ``block`` (from
    :func:`compiled_block`); the steps after the last whole block run eagerly. A solver with
    phases (:meth:`ebmlab.inference.Hybrid.compiled_phase`) runs each phase's blocks as their
    own compiled code, compiled once per phase; a block across a switch runs eagerly.
    Problems that stop keep being stepped, frozen at their recorded end point, so every block
    has the shape of the first and no recompilation follows a shrink; their later iterates
    are never read.
    The results equal the eager path's to floating-point tolerance (the compiler reorders and
    fuses operations).
    """
    n = y0.shape[0]
    y = objective.project(y0.detach())
    energy, grad = objective(y)
    # The compiled steps return contiguous gradients; an eager one may be a view (MLPEnergy's
    # y columns of the input gradient): the same layout for every block, or the second block
    # would compile again for the new strides. Same values.
    grad = grad.contiguous()
    gscale, fscale, gtol_n = start_scales(y, energy, grad, objective, gtol, groups)
    state = tensor_counters(solver.init(y, energy, grad), solver, y.device)
    out_y, out_e = y.clone(), energy.clone()
    is_converged = torch.zeros(n, dtype=torch.bool, device=y.device)
    is_diverged = torch.zeros_like(is_converged)
    active = torch.ones_like(is_converged)
    trajectory = [y.clone()] if is_trajectory else None
    fn, project, x = objective.energy_and_grad, objective.project, objective.x
    steps = 0
    phase_of = getattr(solver, "compiled_phase", None)  # Hybrid: one block per phase
    while steps < max_steps:
        k = min(check_every, max_steps - steps)
        with torch.no_grad():
            phase, left = (solver, None) if phase_of is None else phase_of(state)
            if k == check_every and (left is None or left >= k):
                inner = state if phase is solver else {
                    name: v for name, v in state.items() if name != "phase_t"}
                y, energy, grad, inner, y_prev, e_prev, path = block(
                    phase, fn, project, x, y, energy, grad, inner, k, is_trajectory
                )
                state = inner if phase is solver else {**inner,
                                                       "phase_t": state["phase_t"] + k}
            else:  # the remainder, or a block across a phase switch: eager
                y, energy, grad, state, y_prev, e_prev, path = solver_block(
                    solver, fn, project, x, y, energy, grad, state, k, is_trajectory
                )
        steps += k
        if trajectory is not None:
            frozen = ~active.view(-1, *([1] * (y.ndim - 1)))
            trajectory.extend(torch.where(frozen, out_y, p) for p in path)
        if not is_early_stop:
            continue
        is_done, is_bad, is_stalled = stop_test(
            y, energy, grad, y_prev, e_prev, objective, ftol=ftol, gtol=gtol,
            gscale=gscale, fscale=fscale, gtol_n=gtol_n,
        )
        is_done = is_done & active
        leaving = (is_done | is_bad | is_stalled) & active
        if bool(leaving.any()):
            out_y[leaving] = y[leaving]
            out_e[leaving] = energy[leaving]
            is_converged |= is_done
            is_diverged |= is_bad & active
            active &= ~leaving
            if not bool(active.any()):
                break
    if bool(active.any()):
        out_y[active] = y[active]
        out_e[active] = energy[active]
        if not is_early_stop:
            is_converged[active] = (projected_grad_norm(y, grad, objective) <= gtol_n)[active]
        is_diverged[active] = ~torch.isfinite(energy[active])
    traj = torch.stack(trajectory) if trajectory is not None else None
    scales = (gscale, fscale) if groups is not None else (None, None)
    return Minimization(out_y, out_e, is_converged, is_diverged, steps, traj, *scales)
