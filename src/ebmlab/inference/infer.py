"""``eb.infer``: multi-start minimisation of F(x, .) returning every distinct minimum."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab._compile import check_compile
from ebmlab.domain import Box
from ebmlab.energy import Energy, LatentEnergy, check_energy_output, check_rows_independent
from ebmlab.inference.compiled_loop import (
    compiled_block,
    functional_energy_and_grad,
    minimize_compiled,
)
from ebmlab.inference.dfo import DFO
from ebmlab.inference.joint import infer_joint
from ebmlab.inference.multistart import (  # noqa: F401 (old home of the engine)
    SOLVERS,
    Descent,
    Landscape,
    Minimization,
    assemble,
    minimize,
    resolve_solver,
    starts,
)
from ebmlab.inference.problem import Problem, check_problem
from ebmlab.inference.result import Inference, warn_unconverged
from ebmlab.inference.solver import Objective, Solver

__all__ = ["infer", "warn_unconverged"]


def infer(
    energy: Energy | LatentEnergy,
    x: Tensor | None = None,
    *,
    y_shape: tuple[int, ...] | None = None,
    num_starts: int | str | None = None,
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
    max_starts: int = 65536,
    coverage: float = 0.99,
    compile: bool | str = False,
) -> Inference:
    r"""Find every distinct minimum of :math:`F(x_b, \cdot)` for each input :math:`x_b`.

    All B × S starts are minimised as one batched tensor program (no Python loop over inputs
    or starts). Then:

    - **convergence**: a start has converged when its projected gradient norm is at most
      ``gtol`` times the input's gradient scale (the median gradient norm at its starts), or
      when over one step its energy changed by at most ``ftol · (|F| + f_scale)`` and it
      moved by at most ``sqrt(ftol) · (1 + |y|)``: both tests are relative, so scaling F
      changes nothing, and they compare consecutive steps, so oscillations never pass.
    - **basin merge**: end points are visited from the lowest energy up; one joins a
      representative within ``10 * merge_tol`` when the energy along the segment between
      them never rises above the higher end by more than a small tolerance (no barrier), so
      flat and anisotropic bottoms merge while points closer than ``merge_tol`` across a
      barrier stay apart.
    - **second-order check**: each representative is perturbed both ways along its direction
      of lowest curvature (Lanczos on Hessian-vector products); if the energy drops, it is a
      saddle or a maximum, and the starts that ended there are re-descended from below it.
      Saddles are never reported, even when a start sits exactly on one.
    - **coverage**: ``hits`` counts the starts per minimum, ``estimated_count`` (Chao1) and
      ``unseen_probability`` (Good–Turing) say how many were likely missed;
      ``num_starts="auto"`` adds starts in rounds (doubling) until ``unseen_probability <
      1 - coverage`` or ``max_starts``.
    - **warning**: :class:`ebmlab.InferenceWarning` when some input's reported minima
      include unconverged end points (an input where no start converged reports its
      unconverged end points, flagged ``converged=False``); a converged run is silent.

    Args:
        energy: the energy F (an :class:`ebmlab.Energy`).
        x: conditioning inputs (B, *x_shape), or ``None`` (then B = 1).
        y_shape: event shape of y; taken from ``domain`` or ``energy.y_shape`` if omitted.
        num_starts: starts S per input; default 32, or the number of rows of ``init``;
            ``"auto"``: rounds of starts until the coverage is reached.
        domain: a :class:`ebmlab.Box`: starts are uniform in it and iterates are projected.
        solver: ``"hybrid"`` (default: 20 Adam steps, then L-BFGS), ``"adam"``, ``"gd"``,
            ``"lbfgs"``, ``"dfo"`` (derivative-free), ``"langevin"`` or a solver instance.
        generator: random source for the starts.
        init: starting points (S, *y_shape) shared by all inputs, or (B, S, *y_shape), in the
            problem's dtype and device (detached; never cast).
        max_steps: most solver steps per start.
        gtol: relative gradient tolerance (see above).
        ftol: relative energy-change tolerance between consecutive steps.
        check_every: steps between convergence checks (each one host synchronisation).
        early_stop: ``False`` runs exactly ``max_steps`` steps on every start.
        merge_tol: distance scale of one minimum; default ``1e-3 * domain.diameter`` with a
            domain, else ``1e-2``.
        return_trajectory: keep every start's path as ``trajectory`` (T, B, S, *y_shape).
        init_scale: standard deviation of Gaussian starts when there is no domain.
        dtype, device: of the starts when neither ``x`` nor ``init`` fixes them.
        z_shape, z_domain: for a :class:`ebmlab.LatentEnergy`, the event shape of z and an
            optional Box for it: (y, z) are inferred jointly (see
            :func:`ebmlab.inference.joint.infer_joint`) and ``z`` is filled in.
        top_k: for an energy solved exactly (one with ``infer_exact(x, top_k=...)``, e.g.
            :class:`ebmlab.energies.Chain`, by Viterbi), the number of best answers; such an
            energy ignores the options of the multi-start search.
        max_starts: most starts per input with ``num_starts="auto"``.
        coverage: target of ``1 - unseen_probability`` with ``num_starts="auto"``.
        compile: ``True`` (or ``"cuda-graph"``: also captured in a CUDA graph on CUDA
            tensors) runs the solver's steps between two convergence checks as one
            ``torch.compile``\ d block; the results equal the eager path's to floating-point
            tolerance. The working set then keeps its shape (stopped starts are frozen, not
            removed), an autograd energy is differentiated by ``torch.func.grad``, and the
            first call pays the compilation (seconds to a minute on a CPU; once per run size
            and solver). It pays off for many steps on large batches (see
            ``docs/performance.md``). When compilation fails, one ``UserWarning`` and the
            eager path. The basin merge, the second-order check and the derivative-free
            solver run eagerly.

    Returns:
        An :class:`ebmlab.Inference`.

    Raises:
        ValueError: bad shapes, sizes or tolerances, an energy that mixes the rows of the
            batch, every start diverged, or an unknown ``compile``.
        TypeError: a non-tensor or non-floating input.

    Example:
        >>> import torch, ebmlab as eb
        >>> f = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))
        >>> res = eb.infer(f, x=torch.tensor([[4.0], [1.0]]), num_starts=16,
        ...                generator=torch.Generator().manual_seed(0))
        >>> res.count.tolist(), res.hits.sum(1).tolist()
        ([2, 2], [16, 16])
        >>> res.y[..., 0].sort(-1).values.round(decimals=3).tolist()
        [[-2.0, 2.0], [-1.0, 1.0]]
        >>> well = eb.energies.DoubleWell(2)
        >>> res = eb.infer(well, num_starts="auto", domain=eb.Box([-2.0] * 2, [2.0] * 2),
        ...                generator=torch.Generator().manual_seed(0))
        >>> res.count.tolist(), bool(res.unseen_probability[0] < 0.01)
        ([4], True)
    """
    mode = check_compile(compile)
    if callable(getattr(energy, "infer_exact", None)):
        if mode is not None:
            _eager_warning(compile, f"{type(energy).__name__} is solved exactly")
        return energy.infer_exact(x, top_k=top_k)
    if isinstance(energy, LatentEnergy):
        return infer_joint(
            energy, x, y_shape=y_shape, z_shape=z_shape, num_starts=num_starts, domain=domain,
            z_domain=z_domain, solver=solver, generator=generator, init=init,
            max_steps=max_steps, gtol=gtol, ftol=ftol, check_every=check_every,
            early_stop=early_stop, merge_tol=merge_tol, return_trajectory=return_trajectory,
            init_scale=init_scale, dtype=dtype, device=device, compile=compile,
        )
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
    p = check_problem(
        energy, x, y_shape=y_shape, num_starts=num_starts, domain=domain, solver=solver,
        generator=generator, init=init, max_steps=max_steps, gtol=gtol, ftol=ftol,
        check_every=check_every, merge_tol=merge_tol, dtype=dtype, device=device,
        max_starts=max_starts, coverage=coverage,
    )
    if p.auto and return_trajectory:
        raise ValueError("return_trajectory needs a fixed num_starts, not 'auto'")
    y0 = starts(p.b, p.s, p.shape, domain, init, generator, p.dtype, p.device, init_scale)
    _validate(energy, y0, x, p)
    project = domain.project if domain is not None else None
    landscape = Landscape(energy.energy_and_grad, x, p.shape, project, energy.forward)
    if isinstance(p.solver, DFO):
        if mode is not None:
            _eager_warning(compile, "the derivative-free solver has no compiled steps")
        res = _dfo(energy, y0, x, p, domain, landscape)
    else:
        descent = Descent(p.solver, max_steps, gtol, ftol, check_every)
        traced = None
        if mode is not None:
            uses_autograd = type(energy).energy_and_grad is Energy.energy_and_grad
            fn = functional_energy_and_grad(energy.forward) if uses_autograd else (
                energy.energy_and_grad)
            traced = (compiled_block(mode), fn)
        res = _rounds(landscape, y0, p, descent, generator, domain, init_scale, early_stop,
                      return_trajectory, traced)
    warn_unconverged(res, max_steps)
    return res


def _eager_warning(compile: bool | str, why: str) -> None:
    warnings.warn(f"compile={compile!r}: nothing to compile ({why}); running eager", UserWarning,
                  stacklevel=3)


@torch.no_grad()
def _validate(energy: Energy, y0: Tensor, x: Tensor | None, p: Problem) -> None:
    """Check the energy once on a few starts: output type and shape, and independent rows."""
    if p.b > 1:
        yv, xv = y0[:: p.s], x
    else:
        n = min(p.s, 4)
        yv = y0[:n]
        xv = None if x is None else x.expand(n, *x.shape[1:])
    name = f"{type(energy).__name__}.forward"
    try:
        raw = energy.forward(yv, xv)
    except RuntimeError as err:  # e.g. float64 x into float32 parameters
        if "dtype" not in str(err) and "Double" not in str(err):
            raise
        raise TypeError(
            f"{name} failed on y of dtype {yv.dtype} (the dtype of x or dtype=): {err}; cast "
            "the inputs or the energy (energy.double() / x.float()) so that they agree"
        ) from err
    out = check_energy_output(raw, yv.shape[0], name)
    check_rows_independent(energy.forward, yv, xv, out, name)


def _rounds(
    landscape: Landscape,
    y0: Tensor,
    p: Problem,
    descent: Descent,
    generator: torch.Generator | None,
    domain: Box | None,
    init_scale: float,
    early_stop: bool,
    return_trajectory: bool,
    traced: tuple[Callable, Callable] | None = None,
) -> Inference:
    """Minimise, merge and check; with ``p.auto``, add rounds of starts until covered.

    ``traced`` is ``(block, energy_and_grad)`` for ``compile=``: the starts are minimised by
    :func:`ebmlab.inference.compiled_loop.minimize_compiled` (the merge stays eager).
    """
    b, shape, x = p.b, p.shape, landscape.x

    def run(y: Tensor, rows: Tensor, n: int) -> Minimization:
        xr = None if x is None else x[rows].repeat_interleave(n, dim=0)
        if traced is not None:
            return minimize_compiled(
                Objective(traced[1], xr, landscape.project), y, descent.solver,
                block=traced[0], max_steps=descent.max_steps, gtol=descent.gtol,
                ftol=descent.ftol, check_every=descent.check_every, is_early_stop=early_stop,
                is_trajectory=return_trajectory, groups=n,
            )
        return minimize(
            Objective(landscape.energy_and_grad, xr, landscape.project), y, descent.solver,
            max_steps=descent.max_steps, gtol=descent.gtol, ftol=descent.ftol,
            check_every=descent.check_every, is_early_stop=early_stop,
            is_trajectory=return_trajectory, groups=n,
        )

    all_rows = torch.arange(b, device=p.device)
    first = run(y0, all_rows, p.s)
    gscale, fscale = first.gscale[:: p.s], first.fscale[:: p.s]

    def finish(m: Minimization, s: int, present: Tensor | None) -> Inference:
        return assemble(m, b, s, shape, p.merge_tol, landscape=landscape, descent=descent,
                        gscale=gscale, fscale=fscale, gtol=descent.gtol, is_present=present)

    res = finish(first, p.s, None)
    if not p.auto:
        return res
    d = y0[0].numel()
    pts, e = first.y.reshape(b, p.s, d), first.energy.reshape(b, p.s)
    conv, div = first.is_converged.reshape(b, p.s), first.is_diverged.reshape(b, p.s)
    total = torch.full((b,), p.s, dtype=torch.long, device=p.device)
    steps = first.num_steps
    while True:
        active = (res.unseen_probability >= 1 - p.coverage) & (total < p.max_starts)
        if not bool(active.any()):
            break
        rows = torch.nonzero(active).flatten()
        n = int(min(int(total[rows].max()), p.max_starts - int(total[rows].min())))
        y_new = starts(rows.numel(), n, shape, domain, None, generator, p.dtype, p.device,
                       init_scale)
        more = run(y_new, rows, n)
        steps = max(steps, more.num_steps)
        width = int(total.max()) if bool((total[rows] + n <= total.max()).all()) else int(
            (total[rows] + n).max())
        width = max(width, pts.shape[1])
        if width > pts.shape[1]:
            grow = width - pts.shape[1]
            pts = torch.cat([pts, pts.new_zeros(b, grow, d)], 1)
            e = torch.cat([e, e.new_full((b, grow), float("inf"))], 1)
            conv = torch.cat([conv, conv.new_zeros(b, grow)], 1)
            div = torch.cat([div, div.new_zeros(b, grow)], 1)
        cols = total[rows].unsqueeze(1) + torch.arange(n, device=p.device)  # (R, n)
        r2 = rows.unsqueeze(1).expand(-1, n)
        pts[r2, cols] = more.y.reshape(-1, n, d)
        e[r2, cols] = more.energy.reshape(-1, n)
        conv[r2, cols] = more.is_converged.reshape(-1, n)
        div[r2, cols] = more.is_diverged.reshape(-1, n)
        total[rows] += n
        present = torch.arange(pts.shape[1], device=p.device).unsqueeze(0) < total.unsqueeze(1)
        pooled = Minimization(pts.reshape(-1, *shape), e.reshape(-1), conv.reshape(-1),
                              div.reshape(-1), steps, None)
        res = finish(pooled, pts.shape[1], present)
    return res


def _dfo(
    energy: Energy, y0: Tensor, x: Tensor | None, p: Problem, domain: Box | None,
    landscape: Landscape,
) -> Inference:
    """Derivative-free inference: the final populations of :class:`DFO`, merged by basin."""
    solver = p.solver
    assert isinstance(solver, DFO)
    xr = None if x is None else x.repeat_interleave(p.s, dim=0)

    def energy_fn(y: Tensor) -> Tensor:
        return energy.forward(y, xr)

    width = None
    project = domain.project if domain is not None else (lambda v: v)
    if domain is not None:
        width = (domain.high - domain.low).to(dtype=p.dtype, device=p.device)
    y, e = solver.run(energy_fn, y0, p.b, width, project)
    ok = torch.isfinite(e)
    run = Minimization(y, e, ok, ~ok, solver.num_iters, None)
    scale = e.reshape(p.b, p.s)
    fscale = (scale - scale.median(1, keepdim=True).values).abs().median(1).values
    fscale = torch.where(fscale > 0, fscale, torch.ones_like(fscale))
    return assemble(run, p.b, p.s, p.shape, p.merge_tol, landscape=landscape, fscale=fscale,
                    gscale=torch.zeros_like(fscale))
