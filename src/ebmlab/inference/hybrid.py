"""The default inference solver: an Adam phase for the basin search, then an L-BFGS polish."""

from __future__ import annotations

from torch import Tensor

from ebmlab._checks import check_positive_int
from ebmlab.inference.adam import Adam
from ebmlab.inference.lbfgs import LBFGS
from ebmlab.inference.solver import Objective, SolverState

__all__ = ["Hybrid"]


class Hybrid:
    r"""``adam_steps`` steps of Adam, then L-BFGS from where Adam left off.

    Adam's steps are about ``lr`` long whatever the energy's scale, so the first phase
    follows the descent from each start into its basin without the long line-search jumps
    a quasi-Newton method may take from far away; L-BFGS then converges superlinearly to the
    bottom, on ill-conditioned and curved valleys where Adam's constant step never settles.

    Args:
        adam_steps: length of the first phase (0: L-BFGS only).
        adam, lbfgs: the two solvers (defaults: ``Adam()`` and ``LBFGS()``).

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.diag(torch.tensor([1e-2, 1e2])), mean=[1.0, -1.0])
        >>> res = eb.infer(q, num_starts=4, solver=eb.inference.Hybrid())
        >>> res.count.tolist(), bool(res.converged.all())
        ([1], True)
    """

    def __init__(
        self, adam_steps: int = 20, adam: Adam | None = None, lbfgs: LBFGS | None = None
    ) -> None:
        self.adam_steps = check_positive_int(adam_steps, "adam_steps", minimum=0)
        self.adam = Adam() if adam is None else adam
        self.lbfgs = LBFGS() if lbfgs is None else lbfgs

    def __repr__(self) -> str:
        return f"Hybrid(adam_steps={self.adam_steps}, adam={self.adam}, lbfgs={self.lbfgs})"

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> SolverState:
        state = self.adam.init(y, energy, grad) if self.adam_steps else {}
        return {**state, **self.lbfgs.init(y, energy, grad), "phase_t": 0}

    def step(
        self, y: Tensor, energy: Tensor, grad: Tensor, state: SolverState, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]:
        t = int(state["phase_t"])
        if t < self.adam_steps:
            sub = {k: state[k] for k in ("m", "v", "t")}
            y, energy, grad, sub = self.adam.step(y, energy, grad, sub, objective)
        else:
            sub = {k: state[k] for k in ("s", "g", "rho", "count")}
            y, energy, grad, sub = self.lbfgs.step(y, energy, grad, sub, objective)
        return y, energy, grad, {**state, **sub, "phase_t": t + 1}
