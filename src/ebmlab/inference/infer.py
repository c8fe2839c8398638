"""``eb.infer``: multi-start minimisation of F(x, .) returning every distinct minimum."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlab._checks import (
    check_batch,
    check_generator,
    check_positive,
    check_positive_int,
    check_tensor,
)
from ebmlab.domain import Box
from ebmlab.energy import Energy, LatentEnergy, check_energy_output
from ebmlab.inference.adam import Adam
from ebmlab.inference.gradient_descent import GradientDescent
from ebmlab.inference.lbfgs import LBFGS
from ebmlab.inference.merge import merge_minima
from ebmlab.inference.result import Inference
from ebmlab.inference.solver import Objective, Solver, SolverState

__all__ = ["infer", "minimize", "Minimization", "SOLVERS", "resolve_solver"]

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


def _starts(
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


def infer(
    energy: Energy | LatentEnergy,
    x: Tensor | None = None,
    *,
    y_shape: tuple[int, ...] | None = None,
    num_starts: int | None = None,
    domain: Box | None = None,
    solver: Solver | str | None = None,
    generator: torch.Generator | None = None,
    init: Tensor | None = None,
    max_steps: int = 500,
    gtol: float = 1e-5,
    ftol: float = 1e-9,
    check_every: int = 10,
    early_stop: bool = True,
    merge_tol: float | None = None,
    return_trajectory: bool = False,
    init_scale: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    z_shape: tuple[int, ...] | None = None,
    z_domain: Box | None = None,
) -> Inference:
    r"""Find every distinct minimum of :math:`F(x_b, \cdot)` for each input :math:`x_b`.

    All B × S starts are minimised as one batched tensor program (no Python loop over inputs
    or starts); end points closer than ``merge_tol`` are merged, keeping the lowest energy,
    and the distinct minima come back sorted by energy.

    Args:
        energy: the energy F (an :class:`ebmlab.Energy`).
        x: conditioning inputs (B, *x_shape), or ``None`` (then B = 1).
        y_shape: event shape of y; taken from ``domain`` or ``energy.y_shape`` if omitted.
        num_starts: starts S per input; default 32, or the number of rows of ``init``.
        domain: a :class:`ebmlab.Box`: starts are uniform in it and iterates are projected.
        solver: ``"adam"`` (default), ``"gd"``, ``"lbfgs"`` or a solver instance.
        generator: random source for the starts.
        init: starting points (S, *y_shape) shared by all inputs, or (B, S, *y_shape).
        max_steps: most solver steps per start.
        gtol: converged when the projected gradient norm is at most this.
        ftol: or when the energy changed by at most ``ftol * (1 + |F|)`` over
            ``check_every`` steps.
        check_every: steps between convergence checks (each one host synchronisation).
        early_stop: ``False`` runs exactly ``max_steps`` steps on every start.
        merge_tol: distance under which end points are one minimum; default
            ``1e-3 * domain.diameter`` with a domain, else ``1e-2``.
        return_trajectory: keep every start's path as ``trajectory`` (T, B, S, *y_shape).
        init_scale: standard deviation of Gaussian starts when there is no domain.
        dtype, device: of the starts when neither ``x`` nor ``init`` fixes them.
        z_shape, z_domain: for a :class:`ebmlab.LatentEnergy`, the event shape of z and an
            optional Box for it: (y, z) are inferred jointly (see
            :func:`ebmlab.inference.joint.infer_joint`) and ``z`` is filled in.

    Returns:
        An :class:`ebmlab.Inference`.

    Raises:
        ValueError: bad shapes, sizes or tolerances, or every start diverged.
        TypeError: a non-tensor or non-floating input.

    Example:
        >>> import torch, ebmlab as eb
        >>> f = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))
        >>> res = eb.infer(f, x=torch.tensor([[4.0], [1.0]]), num_starts=16,
        ...                generator=torch.Generator().manual_seed(0))
        >>> res.count.tolist()
        [2, 2]
        >>> res.y[..., 0].sort(-1).values.round(decimals=3).tolist()
        [[-2.0, 2.0], [-1.0, 1.0]]
    """
    if isinstance(energy, LatentEnergy):
        from ebmlab.inference.joint import infer_joint  # joint.py imports this module

        return infer_joint(
            energy, x, y_shape=y_shape, z_shape=z_shape, num_starts=num_starts, domain=domain,
            z_domain=z_domain, solver=solver, generator=generator, init=init,
            max_steps=max_steps, gtol=gtol, ftol=ftol, check_every=check_every,
            early_stop=early_stop, merge_tol=merge_tol, return_trajectory=return_trajectory,
            init_scale=init_scale, dtype=dtype, device=device,
        )
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
    check_positive_int(max_steps, "max_steps", minimum=0)
    check_positive_int(check_every, "check_every")
    check_positive(gtol, "gtol")
    check_positive(ftol, "ftol")
    check_generator(generator)
    if domain is not None and not isinstance(domain, Box):
        raise TypeError(f"domain must be an ebmlab.Box or None; got {type(domain).__name__}")
    shape = y_shape or (domain.shape if domain is not None else energy.y_shape)
    if shape is None:
        raise ValueError("y_shape is needed: pass y_shape=..., a domain, or an energy with y_shape")
    shape = tuple(int(v) for v in shape)
    if num_starts is None:
        has_rows = isinstance(init, Tensor) and init.ndim > len(shape)
        num_starts = init.shape[init.ndim - len(shape) - 1] if has_rows else 32
    s = check_positive_int(num_starts, "num_starts")
    if domain is not None and domain.shape != shape:
        raise ValueError(f"domain has shape {domain.shape} but y_shape is {shape}")
    if energy.y_shape is not None and tuple(energy.y_shape) != shape:
        raise ValueError(f"y_shape is {shape} but {type(energy).__name__} expects {energy.y_shape}")
    if x is not None:
        check_tensor(x, "x")
        b = x.shape[0]
        dtype, device = x.dtype, x.device
    else:
        b = 1
        ref = init if isinstance(init, Tensor) else next(iter(energy.parameters()), None)
        dtype = dtype or (ref.dtype if ref is not None else torch.get_default_dtype())
        device = (
            torch.device(device)
            if device is not None
            else (ref.device if ref is not None else torch.device("cpu"))
        )
    if merge_tol is None:
        merge_tol = 1e-3 * domain.diameter if domain is not None else 1e-2
    check_positive(merge_tol, "merge_tol")
    the_solver = resolve_solver(solver)

    y0 = _starts(b, s, shape, domain, init, generator, dtype, device, init_scale)
    xr = None if x is None else x.repeat_interleave(s, dim=0)  # (B, ...) -> (B*S, ...)
    check_batch(y0, xr, y_name="starts", x_name="x repeated per start")
    # Validate the energy once on the first start of each input; the loop then runs unchecked.
    check_energy_output(energy.forward(y0[::s], x), b, f"{type(energy).__name__}.forward")
    project = domain.project if domain is not None else None
    objective = Objective(energy.energy_and_grad, xr, project)
    run = minimize(
        objective,
        y0,
        the_solver,
        max_steps=max_steps,
        gtol=gtol,
        ftol=ftol,
        check_every=check_every,
        is_early_stop=early_stop,
        is_trajectory=return_trajectory,
    )
    return assemble(run, b, s, shape, merge_tol)


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
