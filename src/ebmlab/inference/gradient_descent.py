"""Plain (projected) gradient descent with a fixed step size."""

from __future__ import annotations

from torch import Tensor

from ebmlab._checks import check_positive
from ebmlab.inference.solver import Objective, SolverState

__all__ = ["GradientDescent"]


class GradientDescent:
    r"""Projected gradient descent :math:`y \leftarrow \Pi(y - \eta \nabla F(y))`.

    Args:
        lr: the step size :math:`\eta > 0`; stable for :math:`\eta < 2/L` on an
            L-smooth energy.

    Example:
        >>> import ebmlab as eb
        >>> res = eb.infer(eb.energies.DoubleWell(1), y_shape=(1,), num_starts=8,
        ...                solver=eb.inference.GradientDescent(lr=0.05))
        >>> res.count.tolist()
        [2]
    """

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = check_positive(lr, "lr")

    def __repr__(self) -> str:
        return f"GradientDescent(lr={self.lr})"

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> SolverState:
        return {}

    def step(
        self, y: Tensor, energy: Tensor, grad: Tensor, state: SolverState, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]:
        y = objective.project(y - self.lr * grad)
        energy, grad = objective(y)
        return y, energy, grad, state
