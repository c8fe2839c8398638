"""The unadjusted Langevin algorithm (ULA)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.samplers.base import Kernel
from ebmlab.samplers.integrators import langevin_step, reflect
from ebmlab.samplers.state import Info, State

__all__ = ["Langevin"]


class Langevin(Kernel):
    r"""The unadjusted Langevin algorithm for :math:`p(y) \propto e^{-\beta F(x, y)}`.

    One step is :math:`y' = y - h \nabla F(y) + \sqrt{2h/\beta}\,\xi` with
    :math:`\xi \sim \mathcal N(0, I)`. Without a Metropolis correction the chain is biased by
    :math:`O(h)`: on :math:`\mathcal N(0, \sigma^2)` its stationary variance is
    :math:`\sigma^2 / (1 - h / (2\sigma^2))`. Use :class:`MALA` to remove the bias.

    Args:
        step_size: the step :math:`h > 0`; the noise scale :math:`\sqrt{2h/\beta}` follows.
        beta: the inverse temperature :math:`\beta > 0`.
        domain: optional :class:`ebmlab.Box`; steps leaving it are mirrored back in.

    Raises:
        ValueError: if ``step_size`` or ``beta`` is not a finite positive number.

    References:
        Roberts and Tweedie, "Exponential convergence of Langevin distributions and their
        discrete approximations", Bernoulli, 1996.

    Example:
        >>> import torch, ebmlab as eb
        >>> kernel = eb.samplers.Langevin(step_size=0.01)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> state = kernel.init(torch.zeros(4, 2), energy)
        >>> state, info = kernel.step(state, energy, generator=torch.Generator().manual_seed(0))
        >>> state.position.shape, info.is_accepted.tolist()
        (torch.Size([4, 2]), [True, True, True, True])
    """

    target_acceptance = None

    def __init__(self, step_size: float, beta: float = 1.0, *, domain: Box | None = None) -> None:
        self._init_common(step_size, beta, domain)
        self._setup()

    def _setup(self) -> None:
        h = self.step_size
        self._neg_step = -h
        sqrt = torch.sqrt if isinstance(h, Tensor) else math.sqrt
        self._noise_scale = sqrt(2.0 * h / self.beta)
        self._constants: tuple[Tensor, Tensor] | None = None

    def _accepted(self, like: Tensor) -> tuple[Tensor, Tensor]:
        # ULA accepts every move: reuse one read-only pair of constant tensors while the
        # batch keeps its shape, dtype and device (cheaper than allocating, or a dict lookup).
        pair = self._constants
        if (
            pair is None
            or pair[0].shape != like.shape
            or pair[0].dtype != like.dtype
            or pair[0].device != like.device
        ):
            is_true = torch.ones(like.shape, dtype=torch.bool, device=like.device)
            pair = self._constants = (torch.ones_like(like), is_true)
        return pair

    def step(
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, Info]:
        """Make one Langevin step for every chain; returns the new state and its info."""
        y = langevin_step(
            state.position, state.grad, self._neg_step, self._noise_scale, generator
        )[0]
        if self.domain is not None:
            low, high = self.domain.bounds(y)
            y = reflect(y, None, low, high)[0]
        e, g = energy.energy_and_grad(y, x)
        # Non-finite energy or gradient: one reduction covers both, and w - w is 0 for a
        # finite w and NaN otherwise (cheaper than isfinite + not).
        w = g.flatten(1).sum(1).add_(e)
        is_divergent = w.sub_(w).ne(0.0)
        rate, accepted = self._accepted(e)
        return State(y, e, g), Info(rate, accepted, is_divergent)
