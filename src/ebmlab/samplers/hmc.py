"""Hamiltonian Monte Carlo with a fixed number of leapfrog steps."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_positive, check_positive_int, check_target_acceptance
from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.samplers.base import Kernel, noise_like
from ebmlab.samplers.integrators import leapfrog
from ebmlab.samplers.metropolis import metropolis_accept, select
from ebmlab.samplers.state import HMCInfo, State

__all__ = [
    "HMC",
    "DIVERGENCE_THRESHOLD",
    "check_mass",
    "mass_setup",
    "kinetic",
    "accept_given",
]

# beta * energy error above which a trajectory counts as divergent (Stan's and BlackJAX's value).
DIVERGENCE_THRESHOLD = 1000.0


def check_mass(mass: float | Tensor) -> float | Tensor:
    """Return ``mass`` if it is a positive number or a positive, finite tensor (diagonal)."""
    if isinstance(mass, Tensor):
        if not mass.is_floating_point() or not bool((mass > 0).all() & mass.isfinite().all()):
            raise ValueError("mass must be a floating tensor of positive finite entries")
        return mass.detach()
    return check_positive(mass, "mass")


def mass_setup(mass: float | Tensor, beta: float) -> tuple[float | Tensor, float | Tensor]:
    r"""Return :math:`M^{-1}` and the momentum scale :math:`\sqrt{M/\beta}` (HMC's and NUTS's)."""
    inv_mass = 1.0 / mass
    scale = torch.sqrt(mass / beta) if isinstance(mass, Tensor) else math.sqrt(mass / beta)
    return inv_mass, scale


def kinetic(p: Tensor, inv_mass: float | Tensor) -> Tensor:
    r""":math:`\tfrac12 p^\top M^{-1} p` per chain."""
    sq = p * p if not isinstance(inv_mass, Tensor) else p * p * inv_mass
    k = sq.flatten(1).sum(1)
    return k.mul_(0.5 * inv_mass) if not isinstance(inv_mass, Tensor) else k.mul_(0.5)


def accept_given(log_ratio: Tensor, uniform: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`~ebmlab.samplers.metropolis_accept` with its uniforms given (drawn beforehand).

    Example:
        >>> import torch
        >>> accept_given(torch.tensor([0.0, -1e9]), torch.tensor([0.5, 0.5]))[0].tolist()
        [True, False]
    """
    rate = log_ratio.clamp(max=0.0).exp_().nan_to_num_(nan=0.0)
    return uniform < rate, rate


def uniforms(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """One uniform per chain, drawn as :func:`~ebmlab.samplers.metropolis_accept` draws it."""
    return torch.rand(like.shape[:1], generator=generator, dtype=like.dtype, device=like.device)


class HMC(Kernel):
    r"""Hamiltonian Monte Carlo for :math:`p(y) \propto e^{-\beta F(x, y)}`.

    The Hamiltonian is :math:`H(y, p) = F(y) + \tfrac12 p^\top M^{-1} p` with momenta
    :math:`p \sim \mathcal N(0, M/\beta)`; a trajectory of ``num_leapfrog`` leapfrog steps is
    accepted with probability :math:`\min(1, e^{-\beta \Delta H})`. Each leapfrog step costs
    one ``energy_and_grad`` (the gradient at the start is the one cached in the state).
    With ``num_leapfrog=1`` and :math:`\epsilon = \sqrt{2h}` HMC is exactly :class:`MALA`.

    Args:
        step_size: the leapfrog step :math:`\epsilon > 0`.
        num_leapfrog: the number of leapfrog steps L >= 1.
        beta: the inverse temperature :math:`\beta > 0`.
        mass: the mass matrix, a number or a positive diagonal of shape ``y_shape``.
        domain: optional :class:`ebmlab.Box` with reflecting walls (exact, Neal 2011).
        target_acceptance: what step-size adaptation aims at during burn-in (0.65);
            ``None`` turns adaptation off.

    Raises:
        ValueError: if ``step_size``, ``beta``, ``mass`` or ``num_leapfrog`` is not positive.

    References:
        Duane et al., "Hybrid Monte Carlo", Phys. Lett. B, 1987; Neal, "MCMC using
        Hamiltonian dynamics", 2011, arXiv:1206.1901; Beskos et al., "Optimal tuning of the
        hybrid Monte Carlo algorithm", Bernoulli, 2013, arXiv:1001.4460 (the 0.65 target).

    Example:
        >>> import torch, ebmlab as eb
        >>> kernel = eb.samplers.HMC(step_size=0.2, num_leapfrog=5)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> state = kernel.init(torch.zeros(3, 2), energy)
        >>> state, info = kernel.step(state, energy, generator=torch.Generator().manual_seed(0))
        >>> info.energy_error.abs().max().item() < 0.05
        True
    """

    def __init__(
        self,
        step_size: float,
        num_leapfrog: int,
        beta: float = 1.0,
        *,
        mass: float | Tensor = 1.0,
        domain: Box | None = None,
        target_acceptance: float | None = 0.65,
    ) -> None:
        self._init_common(step_size, beta, domain)
        self.num_leapfrog = check_positive_int(num_leapfrog, "num_leapfrog")
        self.mass = check_mass(mass)
        self.target_acceptance = check_target_acceptance(target_acceptance)
        self._setup()

    def _setup(self) -> None:
        self._inv_mass, self._momentum_scale = mass_setup(self.mass, self.beta)

    def step(
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, HMCInfo]:
        """Draw momenta, integrate one trajectory per chain and accept or reject its end."""
        p = noise_like(state.position, generator)
        new, log_ratio, is_divergent, energy_error = self._trajectory(state, p, energy, x)
        is_accepted, rate = metropolis_accept(log_ratio, generator)
        new = select(is_accepted, new, state)
        return new, HMCInfo(rate, is_accepted, is_divergent, energy_error)

    def draw(self, y: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Return the random numbers of one step, ``(momentum noise, uniform)``, as :meth:`step`."""
        return noise_like(y, generator), uniforms(y, generator)

    def advance(
        self,
        state: State,
        draws: tuple[Tensor, Tensor],
        energy: Energy,
        x: Tensor | None = None,
    ) -> tuple[State, HMCInfo]:
        """Make :meth:`step`'s move with its random numbers given (from :meth:`draw`).

        No random draw happens here, so the function can be compiled (``eb.sample(...,
        compile=True)``).
        """
        new, log_ratio, is_divergent, energy_error = self._trajectory(state, draws[0], energy, x)
        is_accepted, rate = accept_given(log_ratio, draws[1])
        new = select(is_accepted, new, state)
        return new, HMCInfo(rate, is_accepted, is_divergent, energy_error)

    def _trajectory(
        self, state: State, noise: Tensor, energy: Energy, x: Tensor | None
    ) -> tuple[State, Tensor, Tensor, Tensor]:
        y, e, g = state
        scale = self._momentum_scale
        # A unit momentum scale (the default mass and beta) multiplies by one: skipped, the
        # same numbers.
        p = noise if isinstance(scale, float) and scale == 1.0 else noise * scale
        inv_mass = self._inv_mass
        if isinstance(inv_mass, Tensor) and inv_mass.device != y.device:
            inv_mass = inv_mass.to(y.device, y.dtype)
        k0 = kinetic(p, inv_mass)
        y_new, p_new, e_new, g_new = leapfrog(
            y, p, g, energy, x, self.step_size, self.num_leapfrog, inv_mass, self._bounds(y)
        )
        energy_error = (e_new - e).add_(kinetic(p_new, inv_mass)).sub_(k0)
        log_ratio = energy_error * -self.beta
        # "not <=" is also true for NaN, so one comparison flags both kinds of divergence.
        is_divergent = (log_ratio >= -DIVERGENCE_THRESHOLD).logical_not_()
        return State(y_new, e_new, g_new), log_ratio, is_divergent, energy_error
