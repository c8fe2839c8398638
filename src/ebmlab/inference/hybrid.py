"""The default inference solver: an Adam phase for the basin search, then a quasi-Newton polish."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ebmlab._checks import check_positive_int
from ebmlab.inference.adam import Adam
from ebmlab.inference.lbfgs import BFGS, LBFGS
from ebmlab.inference.solver import Objective, SolverState

__all__ = ["Hybrid", "HybridPhase"]


class HybridPhase:
    """One phase of :class:`Hybrid` as a solver of its own state entries (compiled blocks).

    ``step`` is Hybrid's step for that phase without the phase counter, so a compiled block
    of it never sees the counter change: the two phases compile once each, and the switch
    between them recompiles nothing (see :meth:`Hybrid.compiled_phase`).
    """

    counters = ("t",)

    def __init__(self, solver: Any, keys: tuple[str, ...]) -> None:
        self.solver = solver
        self.keys = keys

    def __repr__(self) -> str:
        return f"HybridPhase({self.solver})"

    def step(
        self, y: Tensor, energy: Tensor, grad: Tensor, state: SolverState, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]:
        sub = {k: state[k] for k in self.keys}
        y, energy, grad, sub = self.solver.step(y, energy, grad, sub, objective)
        return y, energy, grad, {**state, **sub}


class Hybrid:
    r"""``adam_steps`` steps of Adam, then dense BFGS or L-BFGS from where Adam left off.

    Adam's steps are about ``lr`` long whatever the energy's scale, so the first phase
    follows the descent from each start into its basin without the long line-search jumps
    a quasi-Newton method may take from far away; the quasi-Newton polish then converges
    superlinearly to the bottom, on ill-conditioned and curved valleys where Adam's constant
    step never settles.

    The polish is dense :class:`ebmlab.inference.lbfgs.BFGS` when the problem is small
    (``D <= dense_max_dim`` and ``N · D² <= dense_max_elements`` for N problems of D
    variables) and :class:`ebmlab.inference.LBFGS` otherwise: with 10 curvature pairs
    L-BFGS converges only linearly on ill-conditioned problems (a 50-D quadratic of
    condition number 1e4 takes ~650 steps; BFGS ~80, well inside the default budget of 500).

    Args:
        adam_steps: length of the first phase (0: quasi-Newton only).
        adam, lbfgs: the first-phase solver and the large-problem polish (defaults:
            ``Adam()`` and ``LBFGS()``).
        bfgs: the small-problem polish (default ``BFGS()``).
        dense_max_dim: largest D polished by dense BFGS (0: always L-BFGS).
        dense_max_elements: largest size N · D² of the BFGS matrices of one call.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.diag(torch.tensor([1e-2, 1e2])), mean=[1.0, -1.0])
        >>> res = eb.infer(q, num_starts=4, solver=eb.inference.Hybrid())
        >>> res.count.tolist(), bool(res.converged.all())
        ([1], True)
    """

    # Adam's counter as a 0-d tensor in compiled blocks; phase_t stays an int (it branches).
    counters = ("t",)

    def __init__(
        self,
        adam_steps: int = 20,
        adam: Adam | None = None,
        lbfgs: LBFGS | None = None,
        bfgs: BFGS | None = None,
        dense_max_dim: int = 64,
        dense_max_elements: int = 2**25,
    ) -> None:
        self.adam_steps = check_positive_int(adam_steps, "adam_steps", minimum=0)
        self.adam = Adam() if adam is None else adam
        self.lbfgs = LBFGS() if lbfgs is None else lbfgs
        self.bfgs = BFGS() if bfgs is None else bfgs
        self.dense_max_dim = check_positive_int(dense_max_dim, "dense_max_dim", minimum=0)
        self.dense_max_elements = check_positive_int(dense_max_elements, "dense_max_elements")
        self._phases = (HybridPhase(self.adam, ("m", "v", "t")),
                        HybridPhase(self.bfgs, ("h", "has_pair")),
                        HybridPhase(self.lbfgs, ("s", "g", "rho", "count")))

    def __repr__(self) -> str:
        return (f"Hybrid(adam_steps={self.adam_steps}, adam={self.adam}, lbfgs={self.lbfgs}, "
                f"bfgs={self.bfgs}, dense_max_dim={self.dense_max_dim})")

    def is_dense(self, n: int, d: int) -> bool:
        """Whether N problems of D variables are polished by dense BFGS."""
        return d <= self.dense_max_dim and n * d * d <= self.dense_max_elements

    def compiled_phase(self, state: SolverState) -> tuple[HybridPhase, int | None]:
        """The phase that makes the next step from ``state`` and the steps left in it.

        For compiled blocks (``eb.infer(compile=True)``): a block of the phase's steps runs
        ``phase.step`` on the state without ``phase_t`` (the caller advances the counter), so
        that the counter, an int, is not an input of the compiled code; a block that would
        cross the switch runs eagerly. ``None``: the phase lasts to the end.

        Example:
            >>> import torch
            >>> h = Hybrid(adam_steps=20)
            >>> y = torch.zeros(3, 2)
            >>> phase, left = h.compiled_phase(h.init(y, y.sum(-1), y))
            >>> type(phase).__name__, left
            ('HybridPhase', 20)
        """
        t = int(state["phase_t"])
        if t < self.adam_steps:
            return self._phases[0], self.adam_steps - t
        return (self._phases[1] if "h" in state else self._phases[2]), None

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> SolverState:
        state = self.adam.init(y, energy, grad) if self.adam_steps else {}
        polish = self.bfgs if self.is_dense(y.shape[0], y[0].numel()) else self.lbfgs
        return {**state, **polish.init(y, energy, grad), "phase_t": 0}

    def step(
        self, y: Tensor, energy: Tensor, grad: Tensor, state: SolverState, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]:
        t = int(state["phase_t"])
        if t < self.adam_steps:
            sub = {k: state[k] for k in ("m", "v", "t")}
            y, energy, grad, sub = self.adam.step(y, energy, grad, sub, objective)
        elif "h" in state:
            sub = {k: state[k] for k in ("h", "has_pair")}
            y, energy, grad, sub = self.bfgs.step(y, energy, grad, sub, objective)
        else:
            sub = {k: state[k] for k in ("s", "g", "rho", "count")}
            y, energy, grad, sub = self.lbfgs.step(y, energy, grad, sub, objective)
        return y, energy, grad, {**state, **sub, "phase_t": t + 1}
