"""The solver kernel protocol and the ``Objective`` a solver steps on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor

__all__ = ["Objective", "Solver", "SolverState"]

SolverState = dict[str, Tensor | int | float]


class Objective:
    """A batch of N independent minimisation problems: ``objective(y) -> (energy, grad)``.

    ``y`` is (N, *shape); ``project`` maps a point back into the feasible set (identity when
    there is no domain). The driver rebinds ``x`` when it drops converged problems.
    """

    def __init__(
        self,
        energy_and_grad: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]],
        x: Tensor | None,
        project: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.energy_and_grad = energy_and_grad
        self.x = x
        self.project = project if project is not None else _identity

    def __call__(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.energy_and_grad(y, self.x)


def _identity(y: Tensor) -> Tensor:
    return y


class Solver(Protocol):
    """A batched minimisation kernel.

    ``init`` builds the state from the starting points, their energies and gradients;
    ``step`` moves every problem once and returns the new points with their (cached)
    energies and gradients, so no step evaluates the objective twice at the same point.
    Tensors in the state with at least one dimension have the problems as leading dimension,
    so that the driver can drop converged problems by indexing.
    """

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> SolverState: ...

    def step(
        self,
        y: Tensor,
        energy: Tensor,
        grad: Tensor,
        state: SolverState,
        objective: Objective,
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]: ...
