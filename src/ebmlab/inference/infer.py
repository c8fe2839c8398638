"""``eb.infer``: multi-start minimisation of F(x, .) returning every distinct minimum."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab.domain import Box
from ebmlab.energy import Energy, LatentEnergy, check_energy_output
from ebmlab.inference.joint import infer_joint
from ebmlab.inference.multistart import (  # noqa: F401 (old home of the engine)
    SOLVERS,
    Minimization,
    assemble,
    minimize,
    resolve_solver,
    starts,
)
from ebmlab.inference.problem import check_problem
from ebmlab.inference.result import Inference
from ebmlab.inference.solver import Objective, Solver

__all__ = ["infer"]


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
    top_k: int = 1,
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
        top_k: for an energy solved exactly (one with ``infer_exact(x, top_k=...)``, e.g.
            :class:`ebmlab.energies.Chain`, by Viterbi), the number of best answers; such an
            energy ignores the options of the multi-start search.

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
    if callable(getattr(energy, "infer_exact", None)):
        return energy.infer_exact(x, top_k=top_k)
    if isinstance(energy, LatentEnergy):
        return infer_joint(
            energy, x, y_shape=y_shape, z_shape=z_shape, num_starts=num_starts, domain=domain,
            z_domain=z_domain, solver=solver, generator=generator, init=init,
            max_steps=max_steps, gtol=gtol, ftol=ftol, check_every=check_every,
            early_stop=early_stop, merge_tol=merge_tol, return_trajectory=return_trajectory,
            init_scale=init_scale, dtype=dtype, device=device,
        )
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
    p = check_problem(
        energy, x, y_shape=y_shape, num_starts=num_starts, domain=domain, solver=solver,
        generator=generator, init=init, max_steps=max_steps, gtol=gtol, ftol=ftol,
        check_every=check_every, merge_tol=merge_tol, dtype=dtype, device=device,
    )
    y0 = starts(p.b, p.s, p.shape, domain, init, generator, p.dtype, p.device, init_scale)
    xr = None if x is None else x.repeat_interleave(p.s, dim=0)  # (B, ...) -> (B*S, ...)
    # Validate the energy once on the first start of each input; the loop then runs unchecked.
    check_energy_output(energy.forward(y0[::p.s], x), p.b, f"{type(energy).__name__}.forward")
    project = domain.project if domain is not None else None
    objective = Objective(energy.energy_and_grad, xr, project)
    run = minimize(
        objective,
        y0,
        p.solver,
        max_steps=max_steps,
        gtol=gtol,
        ftol=ftol,
        check_every=check_every,
        is_early_stop=early_stop,
        is_trajectory=return_trajectory,
    )
    return assemble(run, p.b, p.s, p.shape, p.merge_tol)
