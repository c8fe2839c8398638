"""The Metropolis-adjusted Langevin algorithm (MALA)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_target_acceptance
from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.samplers.base import Kernel
from ebmlab.samplers.hmc import HMC, accept_given, check_mass, uniforms
from ebmlab.samplers.integrators import axpy, langevin_step
from ebmlab.samplers.metropolis import metropolis_accept, select
from ebmlab.samplers.state import Info, State

__all__ = ["MALA"]


class MALA(Kernel):
    r"""Langevin proposals corrected by Metropolis-Hastings: exact for :math:`e^{-\beta F}`.

    The proposal is the Langevin step :math:`y' = y - h\nabla F(y) + \sqrt{2h/\beta}\,\xi`,
    accepted with probability :math:`\min(1, e^{-\beta(F(y') - F(y))} q(y|y') / q(y'|y))`,
    where :math:`\log q(y'|y) = -\tfrac{\beta}{4h}\|y' - y + h\nabla F(y)\|^2`.
    With a ``domain`` the same move is made as one reflected leapfrog step of HMC with
    :math:`\epsilon = \sqrt{2h}` (identical to MALA away from the walls, and exact with them).
    With a diagonal ``mass`` M the proposal is preconditioned,
    :math:`y' = y - hM^{-1}\nabla F + \sqrt{2h/\beta}\,M^{-1/2}\xi`, made the same way (one
    leapfrog step of HMC with mass M is exactly this proposal and its acceptance).

    Args:
        step_size: the Langevin step :math:`h > 0`.
        beta: the inverse temperature :math:`\beta > 0`.
        domain: optional :class:`ebmlab.Box` with reflecting walls.
        mass: a number or a positive diagonal of shape ``y_shape`` (the preconditioner
            :math:`M`; :func:`ebmlab.sample` adapts it during burn-in by default).
        target_acceptance: acceptance rate that step-size adaptation in
            :func:`ebmlab.sample` aims at during burn-in (0.574, optimal for MALA); ``None``
            turns adaptation off.

    Raises:
        ValueError: if ``step_size`` or ``beta`` is not a finite positive number.

    References:
        Roberts and Tweedie, Bernoulli, 1996; Roberts and Rosenthal, "Optimal scaling of
        discrete approximations to Langevin diffusions", JRSS B, 1998 (the 0.574 target).

    Example:
        >>> import torch, ebmlab as eb
        >>> kernel = eb.samplers.MALA(step_size=0.1)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> state = kernel.init(torch.zeros(3, 2), energy)
        >>> state, info = kernel.step(state, energy, generator=torch.Generator().manual_seed(0))
        >>> info.acceptance_rate.shape
        torch.Size([3])
    """

    def __init__(
        self,
        step_size: float,
        beta: float = 1.0,
        *,
        domain: Box | None = None,
        mass: float | Tensor = 1.0,
        target_acceptance: float | None = 0.574,
    ) -> None:
        self._init_common(step_size, beta, domain)
        self.mass = check_mass(mass)
        self.target_acceptance = check_target_acceptance(target_acceptance)
        self._setup()

    def _setup(self) -> None:
        h = self.step_size
        sqrt = torch.sqrt if isinstance(h, Tensor) else math.sqrt
        self._neg_step = -h
        self._noise_scale = sqrt(2.0 * h / self.beta)
        # log q(y|y') = -beta / (4h) |y - y' + h grad F(y')|^2
        neg_q_scale = -self.beta / (4.0 * h)
        if isinstance(neg_q_scale, Tensor) and neg_q_scale.ndim:
            neg_q_scale = neg_q_scale.reshape(-1)  # per chain: (chains, 1, ...) -> (chains,)
        self._neg_q_scale = neg_q_scale
        mass = getattr(self, "mass", 1.0)
        self._hmc = None
        if self.domain is not None or isinstance(mass, Tensor) or mass != 1.0:
            hmc = HMC(1.0, 1, self.beta, domain=self.domain)
            hmc.mass = mass
            self._hmc = hmc.with_step_size(sqrt(2.0 * h))

    def step(
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, Info]:
        """Propose a Langevin move for every chain and accept or reject it."""
        if self._hmc is not None:
            new, info = self._hmc.step(state, energy, x, generator=generator)
            return new, Info(info.acceptance_rate, info.is_accepted, info.is_divergent)
        y_new, noise = langevin_step(
            state.position, state.grad, self._neg_step, self._noise_scale, generator
        )
        proposal, log_ratio = self._propose(state, y_new, noise, energy, x)
        is_accepted, rate = metropolis_accept(log_ratio, generator)
        return self._finish(state, proposal, log_ratio, is_accepted, rate)

    def draw(self, y: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Return one step's random numbers, ``(noise, uniform)``, as :meth:`step` draws them."""
        if self._hmc is not None:
            return self._hmc.draw(y, generator)
        return (
            torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device),
            uniforms(y, generator),
        )

    def advance(
        self,
        state: State,
        draws: tuple[Tensor, Tensor],
        energy: Energy,
        x: Tensor | None = None,
    ) -> tuple[State, Info]:
        """Make :meth:`step`'s move with its random numbers given (from :meth:`draw`).

        No random draw happens here, so the function can be compiled (``eb.sample(...,
        compile=True)``).
        """
        if self._hmc is not None:
            new, info = self._hmc.advance(state, draws, energy, x)
            return new, Info(info.acceptance_rate, info.is_accepted, info.is_divergent)
        y_new, noise = langevin_step(
            state.position, state.grad, self._neg_step, self._noise_scale, None, draws[0]
        )
        proposal, log_ratio = self._propose(state, y_new, noise, energy, x)
        is_accepted, rate = accept_given(log_ratio, draws[1])
        return self._finish(state, proposal, log_ratio, is_accepted, rate)

    def _propose(
        self, state: State, y_new: Tensor, noise: Tensor, energy: Energy, x: Tensor | None
    ) -> tuple[State, Tensor]:
        y, e, _g = state
        e_new, g_new = energy.energy_and_grad(y_new, x)
        # log q(y'|y) = -|noise|^2 / 2 because (y' - y + h g) = sqrt(2h / beta) noise.
        back = axpy(y - y_new, self.step_size, g_new)
        log_ratio = (
            (e - e_new).mul_(self.beta)
            .add_((back * back).flatten(1).sum(1), alpha=self._neg_q_scale)
            if not isinstance(self._neg_q_scale, Tensor)
            else (e - e_new) * self.beta + (back * back).flatten(1).sum(1) * self._neg_q_scale
        )
        log_ratio = log_ratio.add_((noise * noise).flatten(1).sum(1), alpha=0.5)
        return State(y_new, e_new, g_new), log_ratio

    @staticmethod
    def _finish(
        state: State, proposal: State, log_ratio: Tensor, is_accepted: Tensor, rate: Tensor
    ) -> tuple[State, Info]:
        # Non-finite energy or gradient of the proposal <=> non-finite log ratio.
        is_divergent = (log_ratio - log_ratio).ne(0.0)
        return select(is_accepted, proposal, state), Info(rate, is_accepted, is_divergent)
