"""L-BFGS batched over independent problems, with a backtracking line search per problem."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab._checks import check_positive, check_positive_int
from ebmlab.inference.solver import Objective, SolverState

__all__ = ["LBFGS"]


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
        is_done = torch.zeros_like(is_descent)
        y_new, e_new, g_new = y_flat, energy, g_flat
        for _ in range(self.max_line_search):
            y_try = objective.project((y_flat + alpha.unsqueeze(-1) * d).reshape(shape))
            e_try, g_try = objective(y_try)
            is_ok = ~is_done & (e_try <= energy + self.c1 * alpha * slope)
            y_new = torch.where(is_ok.unsqueeze(-1), y_try.reshape(shape[0], -1), y_new)
            e_new = torch.where(is_ok, e_try, e_new)
            g_new = torch.where(is_ok.unsqueeze(-1), g_try.reshape(shape[0], -1), g_new)
            is_done = is_done | is_ok
            if bool(is_done.all()):
                break
            alpha = torch.where(is_done, alpha, alpha * 0.5)
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
