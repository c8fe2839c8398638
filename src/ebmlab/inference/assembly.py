"""End points to an :class:`ebmlab.Inference`: the basin merge, the second-order check, hits.

:func:`assemble` turns the end points of a :class:`~ebmlab.inference.minimization.Minimization`
of B × S starts into the per-input distinct minima; :class:`Landscape` is the energy it
evaluates for the barrier test and the saddle check, :class:`Descent` the re-descent rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlab.inference.coverage import estimated_count, unseen_probability
from ebmlab.inference.merge import merge_minima, segment_test
from ebmlab.inference.minimization import Minimization, minimize
from ebmlab.inference.result import Inference
from ebmlab.inference.second_order import descent_check
from ebmlab.inference.solver import Objective, Solver

__all__ = ["Landscape", "Descent", "assemble"]


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
