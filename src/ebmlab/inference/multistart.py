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
from ebmlab.inference.annealed_langevin import AnnealedLangevin
from ebmlab.inference.coverage import estimated_count, unseen_probability
from ebmlab.inference.dfo import DFO
from ebmlab.inference.gradient_descent import GradientDescent
from ebmlab.inference.hybrid import Hybrid
from ebmlab.inference.lbfgs import LBFGS
from ebmlab.inference.merge import merge_minima, segment_test
from ebmlab.inference.result import Inference
from ebmlab.inference.second_order import descent_check
from ebmlab.inference.solver import Objective, Solver, SolverState

__all__ = [
    "SOLVERS",
    "resolve_solver",
    "Minimization",
    "minimize",
    "group_scales",
    "projected_grad",
    "projected_grad_norm",
    "starts",
    "Landscape",
    "Descent",
    "assemble",
]

SOLVERS: dict[str, Callable[[], Solver]] = {
    "adam": Adam,
    "gd": GradientDescent,
    "lbfgs": LBFGS,
    "hybrid": Hybrid,
    "dfo": DFO,
    "langevin": AnnealedLangevin,
}


def resolve_solver(solver: Solver | str | None) -> Solver:
    """Return a solver instance from ``None`` (:class:`Hybrid`), a registry name or an instance."""
    if solver is None:
        return Hybrid()
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
    if groups is not None:
        gscale, fscale = group_scales(energy, projected_grad_norm(y, grad, objective), groups)
    else:
        gscale = torch.ones(n, dtype=energy.dtype, device=energy.device)
        fscale = gscale
    gtol_n = gtol * gscale
    state = solver.init(y, energy, grad)
    out_y, out_e = y.clone(), energy.clone()
    is_converged = torch.zeros(n, dtype=torch.bool, device=y.device)
    is_diverged = torch.zeros_like(is_converged)
    index = torch.arange(n, device=y.device)
    x_full = objective.x
    trajectory = [y.clone()] if is_trajectory else None
    y_prev, e_prev = y, energy
    xtol, xgtol = math.sqrt(ftol), math.sqrt(gtol)
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
        flat_g = projected_grad(y, grad, objective).reshape(y.shape[0], -1)
        is_bad = ~(torch.isfinite(energy) & torch.isfinite(flat_g).all(-1))
        moved = (y - y_prev).reshape(y.shape[0], -1).norm(dim=-1)
        size = y.reshape(y.shape[0], -1).norm(dim=-1)
        is_stalled = ((energy - e_prev).abs() <= ftol * (energy.abs() + fscale[index])) & (
            moved <= xtol * (1 + size)
        )
        g_norm = flat_g.norm(dim=-1)
        is_done = ((g_norm <= gtol_n[index]) | (is_stalled & (g_norm <= xgtol * gscale[index])))
        is_done = is_done & ~is_bad
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

    ``init`` is (S, *y_shape), shared by the B inputs, or (B, S, *y_shape), in the problem's
    dtype and device (it is detached, never cast); without it the starts are uniform in
    ``domain``, or Gaussian with standard deviation ``init_scale``.
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
        if init.dtype != dtype or not _same_device(init.device, torch.device(device)):
            raise ValueError(
                f"init has dtype {init.dtype} on {init.device} but the problem is {dtype} on "
                f"{device} (from x, or dtype=/device=); pass init in the same dtype and device "
                "(nothing is cast silently)"
            )
        # A start that requires grad is detached: no graph is kept across solver steps.
        return init.detach().reshape(b * s, *y_shape)
    if domain is not None:
        return domain.sample(b * s, generator=generator, dtype=dtype, device=device)
    noise = torch.randn((b * s, *y_shape), generator=generator, dtype=dtype, device=device)
    return init_scale * noise


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


@dataclass
class Landscape:
    """F(x_b, .) for B inputs on flattened points: what the merge and the checks evaluate.

    Attributes:
        energy_and_grad: ``(y (N, *shape), x (N, ...) or None) -> (energy, grad)``.
        x: (B, ...) the inputs or ``None``.
        shape: event shape of the minimised variable.
        project: projection onto the domain on (N, *shape), or ``None``.
        energy_fn: energy only (no gradient), for the barrier test; default from
            ``energy_and_grad``.
    """

    energy_and_grad: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]]
    x: Tensor | None
    shape: tuple[int, ...]
    project: Callable[[Tensor], Tensor] | None = None
    energy_fn: Callable[[Tensor, Tensor | None], Tensor] | None = None

    def x_rows(self, rows: Tensor) -> Tensor | None:
        return None if self.x is None else self.x[rows]

    def grad(self, flat: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        e, g = self.energy_and_grad(flat.reshape(-1, *self.shape), self.x_rows(rows))
        return e, g.reshape(flat.shape)

    def energy(self, flat: Tensor, rows: Tensor) -> Tensor:
        y, x = flat.reshape(-1, *self.shape), self.x_rows(rows)
        if self.energy_fn is not None:
            with torch.no_grad():
                return self.energy_fn(y, x)
        return self.energy_and_grad(y, x)[0]

    def project_flat(self, flat: Tensor) -> Tensor:
        if self.project is None:
            return flat
        return self.project(flat.reshape(-1, *self.shape)).reshape(flat.shape)

    def objective(self, rows: Tensor) -> Objective:
        return Objective(self.energy_and_grad, self.x_rows(rows), self.project)


@dataclass(frozen=True)
class Descent:
    """How :func:`assemble` re-descends from a saddle: the solver and the stopping rule."""

    solver: Solver
    max_steps: int
    gtol: float
    ftol: float
    check_every: int = 10
    rounds: int = 3


def assemble(
    run: Minimization,
    b: int,
    s: int,
    shape: tuple[int, ...],
    merge_tol: float,
    *,
    landscape: Landscape | None = None,
    descent: Descent | None = None,
    gscale: Tensor | None = None,
    fscale: Tensor | None = None,
    gtol: float = 1e-5,
    is_present: Tensor | None = None,
) -> Inference:
    """Merge the end points of ``run`` (B·S problems) into an :class:`Inference`.

    Without ``landscape`` end points closer than ``merge_tol`` merge. With it the merge is by
    basin (:func:`ebmlab.inference.merge.merge_minima` with a segment barrier test, radius
    ``10 * merge_tol``), and with ``descent`` too every representative passes the
    second-order check (:func:`ebmlab.inference.second_order.descent_check`): the starts
    that ended at a saddle or a maximum are restarted just below it along its direction of
    negative curvature and re-descended (``descent.rounds`` times at most); a point that
    still fails is dropped and counted unconverged. ``gscale``/``fscale`` (B,) are the
    gradient and energy scales of the inputs (:func:`group_scales`), ``is_present`` (B, S)
    marks real starts when inputs have different numbers of starts (padding).
    """
    d = math.prod(shape)
    points = run.y.reshape(b, s, d).clone()
    e = run.energy.reshape(b, s).clone()
    present = torch.ones(b, s, dtype=torch.bool, device=e.device) if is_present is None else (
        is_present)
    is_diverged = run.is_diverged.reshape(b, s) & present
    is_converged = run.is_converged.reshape(b, s) & present
    is_rejected = torch.zeros_like(present)
    one = torch.ones(b, dtype=e.dtype, device=e.device)
    gscale = one if gscale is None else gscale
    fscale = one if fscale is None else fscale
    radius = 10.0 * merge_tol
    # Energy tolerance of one basin: a relative rise of the energy's scale, plus what a
    # converged end point (|grad| <= gtol * gscale) can still drop over one radius.
    delta = 1e-4 * fscale + 2 * radius * gtol * gscale
    same_basin = None
    if landscape is not None:
        same_basin = segment_test(landscape.energy, delta)
    rounds = descent.rounds if (descent is not None and landscape is not None) else 0
    for attempt in range(rounds + 1):
        ok = present & ~is_diverged & ~is_rejected
        is_kept = ok & (is_converged | ~(is_converged & ok).any(1, keepdim=True))
        merged = merge_minima(points, e, is_kept, merge_tol, same_basin=same_basin,
                              radius=radius)
        if attempt == rounds:
            break
        # Only converged representatives are checked: unconverged ones are reported as such.
        is_rep = merged.is_minimum & torch.gather(is_converged, 1, merged.order)
        bi, pos = torch.nonzero(is_rep, as_tuple=True)
        if bi.numel() == 0:
            break
        start = merged.order[bi, pos]
        assert landscape is not None and descent is not None
        bad, plus, minus = descent_check(
            landscape.grad, landscape.project_flat, points[bi, start], e[bi, start], bi,
            torch.full_like(e[bi, start], radius), delta[bi],
        )
        if not bool(bad.any()):
            break
        # Every start merged into a failing representative restarts below it.
        bad_pos = torch.zeros_like(merged.is_minimum)
        bad_pos[bi[bad], pos[bad]] = True
        lab = merged.label.clamp_min(0)
        hit = (merged.label >= 0) & torch.gather(bad_pos, 1, lab)  # sorted positions
        if attempt == rounds - 1:
            rej = torch.zeros_like(present)
            rej.scatter_(1, merged.order, hit)
            is_rejected |= rej
            continue
        rb, rp = torch.nonzero(hit, as_tuple=True)
        rs = merged.order[rb, rp]
        rep = torch.zeros(b, s, dtype=torch.long, device=e.device)
        rep[bi, pos] = torch.arange(bi.numel(), device=e.device)
        which = rep[rb, lab[rb, rp]]
        y_new = torch.where((rs % 2 == 0).unsqueeze(-1), plus[which], minus[which])
        again = minimize(
            landscape.objective(rb), y_new.reshape(-1, *shape), descent.solver,
            max_steps=descent.max_steps, gtol=gtol, ftol=descent.ftol,
            check_every=descent.check_every,
        )
        points[rb, rs] = again.y.reshape(-1, d)
        e[rb, rs] = again.energy
        is_converged[rb, rs] = again.is_converged
        is_diverged[rb, rs] = again.is_diverged
    order, is_minimum, count, e_sorted = merged[:4]
    if bool((count == 0).any()):
        bad_rows = torch.nonzero(count == 0).flatten().tolist()
        if bool(is_rejected[bad_rows].any()):
            raise ValueError(
                f"no start reached a minimum for inputs {bad_rows[:10]}: every end point "
                "diverged or failed the second-order check (a saddle, a maximum, or a "
                "solver cycling at an unstable step size); lower the solver's step size or "
                "raise max_steps"
            )
        raise ValueError(
            f"every start diverged (non-finite energy or gradient) for inputs {bad_rows[:10]}; "
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
    num_unconverged = ((~is_converged & ~is_diverged & present) | is_rejected).sum(1)
    # Hits and first hits per representative (indexed by sorted position, then gathered).
    lab = merged.label
    has = lab >= 0
    hits_pos = torch.zeros(b, s, dtype=torch.long, device=e.device)
    hits_pos.scatter_add_(1, lab.clamp_min(0), has.long())
    first_pos = torch.full((b, s), s, dtype=torch.long, device=e.device)
    first_pos.scatter_reduce_(1, lab.clamp_min(0), torch.where(has, order, s), reduce="amin")
    hits = torch.where(valid, torch.gather(hits_pos, 1, rank), 0)
    first_hit = torch.where(valid, torch.gather(first_pos, 1, rank), s)
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
        hits=hits,
        estimated_count=estimated_count(hits),
        unseen_probability=unseen_probability(hits),
        first_hit=first_hit,
    )
