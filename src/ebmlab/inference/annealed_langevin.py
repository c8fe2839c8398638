"""Annealed Langevin descent: noisy gradient steps with a temperature decaying to zero."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive, check_positive_int
from ebmlab.inference.solver import Objective, SolverState

__all__ = ["AnnealedLangevin"]


class AnnealedLangevin:
    r"""Noisy descent :math:`y \leftarrow \Pi(y - \eta \nabla F + \sqrt{2 \eta T_t}\, \xi)`.

    The temperature decays as :math:`T_t = T_0 (1 - t / n)_+^2` over ``anneal_steps`` = n
    steps, after which the steps are plain projected gradient descent. The noise lets a start
    hop over the small barriers of a rugged landscape before it settles; at :math:`T = 0` it
    is :class:`ebmlab.inference.GradientDescent`.

    Args:
        lr: the step size :math:`\eta` (stable for :math:`\eta < 2/L`).
        temperature: :math:`T_0`, in units of the energy.
        anneal_steps: steps until the temperature reaches zero.
        generator: random source of the noise.

    References:
        Gelfand & Mitter, "Recursive stochastic algorithms for global optimization in
        R^d", SIAM J. Control Optim. 29(5), 1991.

    Example:
        >>> import torch, ebmlab as eb
        >>> solver = eb.inference.AnnealedLangevin(lr=0.05, temperature=0.5,
        ...                                        generator=torch.Generator().manual_seed(0))
        >>> res = eb.infer(eb.energies.DoubleWell(1), y_shape=(1,), num_starts=8,
        ...                solver=solver, max_steps=600)
        >>> res.count.tolist(), res.best.abs().round(decimals=3).tolist()
        ([2], [[1.0]])
    """

    def __init__(
        self,
        lr: float = 0.01,
        temperature: float = 1.0,
        anneal_steps: int = 300,
        generator: torch.Generator | None = None,
    ) -> None:
        self.lr = check_positive(lr, "lr")
        self.temperature = check_positive(temperature, "temperature")
        self.anneal_steps = check_positive_int(anneal_steps, "anneal_steps")
        self.generator = check_generator(generator)

    def __repr__(self) -> str:
        return (f"AnnealedLangevin(lr={self.lr}, temperature={self.temperature}, "
                f"anneal_steps={self.anneal_steps})")

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> SolverState:
        return {"t": 0}

    def step(
        self, y: Tensor, energy: Tensor, grad: Tensor, state: SolverState, objective: Objective
    ) -> tuple[Tensor, Tensor, Tensor, SolverState]:
        t = int(state["t"])
        temp = self.temperature * max(0.0, 1.0 - t / self.anneal_steps) ** 2
        y = y - self.lr * grad
        if temp > 0:
            noise = torch.randn(y.shape, generator=self.generator, dtype=y.dtype, device=y.device)
            y = y + math.sqrt(2 * self.lr * temp) * noise
        y = objective.project(y)
        energy, grad = objective(y)
        return y, energy, grad, {"t": t + 1}
