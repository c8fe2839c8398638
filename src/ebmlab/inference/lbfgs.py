"""L-BFGS and dense BFGS batched over independent problems, with a backtracking line search."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab._checks import check_positive, check_positive_int
from ebmlab.inference.solver import Objective, SolverState

__all__ = ["LBFGS", "BFGS", "armijo_search", "secant_refine", "host_any", "host_all"]


# The line searches' early exits read a flag on the host: a graph break under
# torch.compile (eb.infer(compile=True)). Behind torch.compiler.disable the compiler steps
# over the read instead of tracing into it and printing its multi-line warning.
@torch.compiler.disable
def host_any(flags: Tensor) -> bool:
    """``bool(flags.any())``, one host read, not traced by ``torch.compile``."""
    return bool(flags.any())


@torch.compiler.disable
def host_all(flags: Tensor) -> bool:
    """``bool(flags.all())``, one host read, not traced by ``torch.compile``."""
    return bool(flags.all())


class LBFGS:
    r"""Limited-memory BFGS on every problem at once.

    Each problem keeps its own curvature pairs :math:`(s_i, g_{i+1} - g_i)`, its own search
    direction from the two-loop recursion, and its own Armijo backtracking step
    (:math:`F(y + \alpha d) \le F(y) + c_1 \alpha \nabla F^\top d`, halving :math:`\alpha`).
    Pairs with non-positive curvature are skipped; a non-descent direction falls back to
    the negative gradient. With a box domain the trial points are projected.

    Args:
        history: number of curvature pairs m kept per problem.
        max_step: largest step length (trust cap on :math:`\|\alpha d\|`).
        c1: Armijo constant. max_line_search: halvings before the step is rejected.

    References:
        Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, Algorithms 7.4 and 3.1.

    Example:
        >>> import torch, ebmlab as eb
        >>> res = eb.infer(eb.energies.Banana(), y_shape=(2,), num_starts=4,
        ...                solver=eb.inference.LBFGS(), domain=eb.Box([-2, -1], [2, 3]))
        >>> torch.allclose(res.best, torch.tensor([[1.0, 1.0]]), atol=1e-3)
        True
    """

    def __init__(
        self,
        history: int = 10,
        max_step: float = 1.0,
        c1: float = 1e-4,
        max_line_search: int = 20,
    ) -> None:
        self.history = check_positive_int(history, "history")
        self.max_step = check_positive(max_step, "max_step")
        self.c1 = check_positive(c1, "c1")
        self.max_line_search = check_positive_int(max_line_search, "max_line_search")

    def __repr__(self) -> str:
        return f"LBFGS(history={self.history}, max_step={self.max_step})"

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> SolverState:
        n, d = y.shape[0], y[0].numel()
        zeros = y.new_zeros(n, self.history, d)
        return {
            "s": zeros,
            "g": zeros.clone(),
            "rho": y.new_zeros(n, self.history),
            "count": 0,
        }

    def _direction(self, grad: Tensor, state: SolverState) -> Tensor:
        s, dg, rho = state["s"], state["g"], state["rho"]  # (N, m, D), (N, m, D), (N, m)
        m = min(int(state["count"]), self.history)
        q = grad.clone()
        alphas = []
        # Pairs are stored newest first, so the first loop runs i = 0..m-1.
        for i in range(m):
            a = rho[:, i] * (s[:, i] * q).sum(-1)
            q = q - a.unsqueeze(-1) * dg[:, i]
            alphas.append(a)
        if m:
            sy = (s[:, 0] * dg[:, 0]).sum(-1)
            yy = (dg[:, 0] * dg[:, 0]).sum(-1)
            gamma = torch.where(yy > 0, sy / yy.clamp_min(torch.finfo(yy.dtype).tiny), 1.0)
            q = q * torch.where(rho[:, 0] > 0, gamma, torch.ones_like(gamma)).unsqueeze(-1)
        for i in reversed(range(m)):
            b = rho[:, i] * (dg[:, i] * q).sum(-1)
            q = q + (alphas[i] - b).unsqueeze(-1) * s[:, i]
        return -q

    def step(
        self, y: Tensor, energy: Tensor, grad: Tensor, state: SolverState, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]:
        shape = y.shape
        y_flat, g_flat = y.reshape(shape[0], -1), grad.reshape(shape[0], -1)
        d = self._direction(g_flat, state)
        slope = (d * g_flat).sum(-1)
        is_descent = slope < 0
        d = torch.where(is_descent.unsqueeze(-1), d, -g_flat)
        slope = torch.where(is_descent, slope, -(g_flat * g_flat).sum(-1))
        norm = d.norm(dim=-1).clamp_min(torch.finfo(d.dtype).tiny)
        alpha = torch.clamp(self.max_step / norm, max=1.0)
        # Without a curvature pair (first step, or none accepted yet) the direction is -g,
        # whose length says nothing: try a step of unit length (capped by max_step).
        has_pair = state["rho"][:, 0] > 0
        alpha = torch.where(has_pair, alpha, min(1.0, self.max_step) / norm)
        y_new, e_new, g_new, _, is_done = armijo_search(
            objective, y_flat, shape, energy, g_flat, d, slope, alpha, self.c1,
            self.max_line_search,
        )
        s_new, dg_new = y_new - y_flat, g_new - g_flat
        sy = (s_new * dg_new).sum(-1)
        is_pair = is_done & (sy > 1e-10 * s_new.norm(dim=-1) * dg_new.norm(dim=-1))
        rho_new = torch.where(is_pair, 1.0 / torch.where(is_pair, sy, 1.0), 0.0)

        # Newest pair first; problems without a usable pair keep their old history.
        def push(new: Tensor, old: Tensor) -> Tensor:
            shifted = torch.cat([new.unsqueeze(1), old[:, :-1]], 1)
            return torch.where(is_pair.view(-1, *([1] * (old.ndim - 1))), shifted, old)

        s_hist = push(s_new, state["s"])
        g_hist = push(dg_new, state["g"])
        r_hist = push(rho_new, state["rho"])
        new_state = {"s": s_hist, "g": g_hist, "rho": r_hist, "count": int(state["count"]) + 1}
        return y_new.reshape(shape), e_new, g_new.reshape(shape), new_state


class BFGS:
    r"""Dense BFGS on every problem at once: an inverse-Hessian estimate H (N, D, D) each.

    The direction is :math:`-H \nabla F`; after each accepted step with positive curvature
    :math:`s^\top y > 0` (:math:`s` the step, :math:`y` the change of the gradient) H gets
    the BFGS update :math:`H \leftarrow (I - \rho s y^\top) H (I - \rho y s^\top) + \rho s
    s^\top`, :math:`\rho = 1 / s^\top y`, starting from :math:`(s^\top y / y^\top y) I` at the
    first pair. Unlike :class:`LBFGS` it keeps every curvature pair, so it converges
    superlinearly on ill-conditioned problems where a short history converges only linearly
    (a 50-D quadratic of condition number 1e4: about 60 steps, against 600 for L-BFGS with
    10 pairs). Memory and time per step are O(N·D²): meant for small D (the default
    :class:`Hybrid` uses it up to ``D = 64``). The step cap and the projection are those of
    :class:`LBFGS`; after the Armijo backtracking, up to ``refine`` secant steps on the slope
    along the direction (:func:`secant_refine`) lengthen or shorten the accepted step towards
    the line minimum, without which BFGS from a small initial H takes ~5x more steps.

    Args:
        max_step: largest step length (trust cap on :math:`\|\alpha d\|`).
        c1: Armijo constant. max_line_search: halvings before the step is rejected.
        refine: secant refinements per step (0: backtracking only).
        c2: no refinement once the slope has fallen below ``c2`` times its initial size.

    References:
        Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, Algorithm 6.1 and (6.20).

    Example:
        >>> import torch, ebmlab as eb
        >>> from ebmlab.inference.lbfgs import BFGS
        >>> res = eb.infer(eb.energies.Banana(), y_shape=(2,), num_starts=4, solver=BFGS(),
        ...                domain=eb.Box([-2, -1], [2, 3]))
        >>> torch.allclose(res.best, torch.tensor([[1.0, 1.0]]), atol=1e-3)
        True
    """

    def __init__(
        self,
        max_step: float = 1.0,
        c1: float = 1e-4,
        max_line_search: int = 20,
        refine: int = 2,
        c2: float = 0.01,
    ) -> None:
        self.max_step = check_positive(max_step, "max_step")
        self.c1 = check_positive(c1, "c1")
        self.max_line_search = check_positive_int(max_line_search, "max_line_search")
        self.refine = check_positive_int(refine, "refine", minimum=0)
        self.c2 = check_positive(c2, "c2")

    def __repr__(self) -> str:
        return f"BFGS(max_step={self.max_step}, refine={self.refine})"

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> SolverState:
        n, d = y.shape[0], y[0].numel()
        eye = torch.eye(d, dtype=y.dtype, device=y.device)
        return {"h": eye.expand(n, d, d).clone(), "has_pair": torch.zeros(
            n, dtype=torch.bool, device=y.device)}

    def step(
        self, y: Tensor, energy: Tensor, grad: Tensor, state: SolverState, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]:
        shape = y.shape
        y_flat, g_flat = y.reshape(shape[0], -1), grad.reshape(shape[0], -1)
        h, has_pair = state["h"], state["has_pair"]
        # Coordinates held at a bound by a gradient pointing out of the domain stay put: the
        # direction lives on the free ones (projected quasi-Newton), else a step along -Hg
        # that leaves the box can be projected into no decrease at all.
        out = y - grad
        held = out.reshape(shape[0], -1) != objective.project(out).reshape(shape[0], -1)
        held = held & (objective.project(out).reshape(shape[0], -1) == y_flat)
        g_free = torch.where(held, 0.0, g_flat)
        d = torch.where(held, 0.0, -torch.bmm(h, g_free.unsqueeze(-1)).squeeze(-1))
        slope = (d * g_flat).sum(-1)
        is_descent = slope < 0
        d = torch.where(is_descent.unsqueeze(-1), d, -g_free)
        slope = torch.where(is_descent, slope, -(g_free * g_free).sum(-1))
        norm = d.norm(dim=-1).clamp_min(torch.finfo(d.dtype).tiny)
        alpha = torch.clamp(self.max_step / norm, max=1.0)
        # Before the first curvature pair -g says nothing about the step's length.
        alpha = torch.where(has_pair, alpha, min(1.0, self.max_step) / norm)
        found = armijo_search(
            objective, y_flat, shape, energy, g_flat, d, slope, alpha, self.c1,
            self.max_line_search,
        )
        is_done = found[4]
        if self.refine:
            y_new, e_new, g_new = secant_refine(
                objective, y_flat, shape, energy, g_flat, d, slope, found[3],
                (found[0], found[1], found[2], is_done), self.c1, self.c2, self.refine,
                self.max_step / norm,
            )
        else:
            y_new, e_new, g_new = found[:3]
        s, dg = y_new - y_flat, g_new - g_flat
        sy = (s * dg).sum(-1)
        tiny = torch.finfo(sy.dtype).tiny
        # The first pair with positive curvature sets the scale of H (Nocedal & Wright 6.20).
        yy = (dg * dg).sum(-1)
        is_first = is_done & ~has_pair & (sy > 1e-10 * s.norm(dim=-1) * dg.norm(dim=-1))
        if host_any(is_first):
            h = h * torch.where(is_first, sy / yy.clamp_min(tiny), 1.0).view(-1, 1, 1)
        hy = torch.bmm(h, dg.unsqueeze(-1)).squeeze(-1)
        yhy = (dg * hy).sum(-1)
        # Powell's damping in the inverse form: where the curvature s'y is below 0.2 y'Hy
        # (a non-convex stretch), s is pulled towards Hy so that the update keeps H positive
        # definite and still learns, instead of skipping the pair and freezing H.
        damp = sy < 0.2 * yhy
        theta = torch.where(damp, 0.8 * yhy / (yhy - sy).clamp_min(tiny), 1.0)
        s_bar = theta.unsqueeze(-1) * s + (1 - theta).unsqueeze(-1) * hy
        sy = (s_bar * dg).sum(-1)
        is_pair = is_done & (has_pair | is_first) & (yhy > 0) & (sy > 0)
        rho = torch.where(is_pair, 1.0 / torch.where(is_pair, sy, 1.0), 0.0)
        # H - rho (s hy' + hy s') + (rho^2 y'Hy + rho) s s' as one batched rank-2 update.
        u = (rho * rho * yhy + rho).unsqueeze(-1) * s_bar - rho.unsqueeze(-1) * hy
        left = torch.stack([u, -rho.unsqueeze(-1) * s_bar], 2)  # (N, D, 2)
        h = torch.baddbmm(h, left, torch.stack([s_bar, hy], 1))
        # A step that found no decrease restarts from H = I (a steepest-descent step).
        if not host_all(is_done):
            eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
            h = torch.where(is_done.view(-1, 1, 1), h, eye)
        new_state = {"h": h, "has_pair": (has_pair | is_pair) & is_done}
        return y_new.reshape(shape), e_new, g_new.reshape(shape), new_state


def armijo_search(
    objective: Objective,
    y_flat: Tensor,
    shape: torch.Size,
    energy: Tensor,
    g_flat: Tensor,
    d: Tensor,
    slope: Tensor,
    alpha: Tensor,
    c1: float,
    max_line_search: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""Armijo backtracking per problem from step ``alpha`` along ``d`` (halving).

    Returns the accepted points, energies and gradients (flattened; the old ones where no
    step passed), the (N,) last steps tried and the (N,) flags of the problems whose step
    passed
    :math:`F(\Pi(y + \alpha d)) \le F(y) + c_1 \alpha \nabla F^\top d`.
    """
    is_done = torch.zeros(y_flat.shape[0], dtype=torch.bool, device=y_flat.device)
    y_new, e_new, g_new = y_flat, energy, g_flat
    for _ in range(max_line_search):
        y_try = objective.project((y_flat + alpha.unsqueeze(-1) * d).reshape(shape))
        e_try, g_try = objective(y_try)
        is_ok = ~is_done & (e_try <= energy + c1 * alpha * slope)
        y_new = torch.where(is_ok.unsqueeze(-1), y_try.reshape(shape[0], -1), y_new)
        e_new = torch.where(is_ok, e_try, e_new)
        g_new = torch.where(is_ok.unsqueeze(-1), g_try.reshape(shape[0], -1), g_new)
        is_done = is_done | is_ok
        if host_all(is_done):
            break
        alpha = torch.where(is_done, alpha, alpha * 0.5)
    return y_new, e_new, g_new, alpha, is_done


def secant_refine(
    objective: Objective,
    y_flat: Tensor,
    shape: torch.Size,
    energy: Tensor,
    g_flat: Tensor,
    d: Tensor,
    slope: Tensor,
    alpha: Tensor,
    found: tuple[Tensor, Tensor, Tensor, Tensor],
    c1: float,
    c2: float,
    rounds: int,
    max_alpha: Tensor,
    spread: float = 100.0,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Move accepted steps towards the minimum along ``d`` by secant steps on its slope.

    ``found`` is what :func:`armijo_search` returned, ``alpha`` (N,) the accepted steps.
    Where the slope at the accepted point :math:`\phi'(\alpha) = \nabla F^\top d` is
    still above ``c2`` times the initial one in size, the step
    :math:`\alpha \phi'(0) / (\phi'(0) - \phi'(\alpha))` (the exact line minimum on a
    quadratic; ``spread`` times longer where the slope did not grow), kept within a factor
    ``spread`` of ``alpha`` and below ``max_alpha``, is tried and kept if it lowers the energy
    and passes Armijo. Too short steps are what slows quasi-Newton methods on ill-conditioned
    problems when the line search only backtracks.
    """
    y_new, e_new, g_new, is_done = found
    for _ in range(rounds):
        dn = (g_new * d).sum(-1)
        need = is_done & (dn.abs() > c2 * slope.abs()) & torch.isfinite(dn)
        if not host_any(need):
            break
        grew = dn > slope
        ratio = torch.where(grew, slope / torch.where(grew, slope - dn, -1.0), spread)
        a2 = torch.minimum((alpha * ratio).clamp(alpha / spread, alpha * spread), max_alpha)
        y_try = objective.project((y_flat + a2.unsqueeze(-1) * d).reshape(shape))
        e_try, g_try = objective(y_try)
        ok = need & (e_try <= e_new) & (e_try <= energy + c1 * a2 * slope)
        y_new = torch.where(ok.unsqueeze(-1), y_try.reshape(shape[0], -1), y_new)
        e_new = torch.where(ok, e_try, e_new)
        g_new = torch.where(ok.unsqueeze(-1), g_try.reshape(shape[0], -1), g_new)
        alpha = torch.where(ok, a2, alpha)
        is_done = ok
    return y_new, e_new, g_new
