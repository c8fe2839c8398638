"""Adam, batched over independent problems: the default inference solver."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_positive
from ebmlab.inference.solver import Objective, SolverState

__all__ = ["Adam"]


class Adam:
    r"""Adam on every problem at once, the update of ``torch.optim.Adam`` written in place.

    Args:
        lr: step size; Adam's steps are about ``lr`` long whatever the gradient's scale.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015, arXiv:1412.6980.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2), mean=[1.0, -1.0])
        >>> res = eb.infer(q, num_starts=4, solver=eb.inference.Adam(lr=0.1))
        >>> torch.allclose(res.best, torch.tensor([[1.0, -1.0]]), atol=1e-3)
        True
    """

    # The step counters that compiled blocks keep as 0-d tensors (see tensor_counters).
    counters = ("t",)

    def __init__(
        self, lr: float = 0.05, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.lr = check_positive(lr, "lr")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1); got {betas}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = check_positive(eps, "eps")

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps})"

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> SolverState:
        return {"m": torch.zeros_like(y), "v": torch.zeros_like(y), "t": 0}

    def step(
        self, y: Tensor, energy: Tensor, grad: Tensor, state: SolverState, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]:
        b1, b2 = self.betas
        m, v = state["m"], state["v"]
        t = state["t"]
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        if isinstance(t, Tensor):
            # A 0-d float64 counter (compiled blocks, see minimize_compiled): one graph for
            # every block instead of a recompilation when the Python int changes; the same
            # update to float rounding.
            t = t + 1
            scale = (-self.lr / (1 - b1**t)).to(y.dtype)
            denom = (v.sqrt() / torch.sqrt(1 - b2**t).to(v.dtype)).add_(self.eps)
            y = objective.project(torch.addcmul(y, m / denom, scale))
        else:
            t = int(t) + 1
            bias1 = 1 - b1**t
            denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(self.eps)
            y = objective.project(y.addcdiv(m, denom, value=-self.lr / bias1))
        energy, grad = objective(y)
        return y, energy, grad, {"m": m, "v": v, "t": t}
