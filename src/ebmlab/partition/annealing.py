"""One AIS pass over a temperature ladder, and the pilot-tuned transitions of :class:`AIS`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.partition._common import check_finite_energies, sample_distribution
from ebmlab.partition.path import TemperedEnergy
from ebmlab.samplers.hmc import HMC
from ebmlab.samplers.metropolis import nan_to_neginf
from ebmlab.samplers.random_walk import RandomWalkMetropolis
from ebmlab.samplers.state import State

__all__ = ["TRANSITIONS", "Annealing", "StepTuner", "make_transition", "base_sample",
           "base_log_prob"]

# The built-in transitions of AIS and the acceptance rate each is tuned towards by default.
TRANSITIONS = {"mala": 0.574, "hmc": 0.65, "random_walk": 0.3}


def make_transition(kind: str, factor: Tensor, spread: Tensor, c: int,
                    shape: tuple[int, ...], num_leapfrog: int = 1) -> Any:
    """Build the kernel of one AIS step for C chains per input, rows ordered (B, C).

    ``factor`` (B, 1, 1) times the particle ``spread`` (B, 1, D) is the random walk's scale
    per coordinate; for ``"mala"`` (one leapfrog step) and ``"hmc"`` the factor is the
    leapfrog step and the squared spread the inverse mass (a diagonal preconditioner).
    """
    b, d = spread.shape[0], spread.shape[-1]
    if kind == "random_walk":
        return RandomWalkMetropolis((factor * spread).expand(b, c, d).reshape(b * c, *shape))
    eps = factor.expand(b, c, 1).reshape(b * c, *([1] * len(shape)))
    mass = spread.square().reciprocal().expand(b, c, d).reshape(b * c, *shape)
    kernel = HMC(1.0, num_leapfrog if kind == "hmc" else 1, target_acceptance=None)
    return kernel.with_mass(mass).with_step_size(eps)


class StepTuner:
    """Choose the pilot's kernels: the particle spread times a factor tuned per temperature.

    The log factor moves by (last step's mean acceptance - target) at every step, so the
    kernels follow the changing width of the tempered targets; ``params`` records the
    (factor, spread) of every step, which the main run reuses frozen.
    """

    def __init__(self, kind: str, b: int, c: int, target_acceptance: float,
                 num_leapfrog: int = 1) -> None:
        self.kind, self.b, self.c, self.target = kind, b, c, target_acceptance
        self.num_leapfrog = num_leapfrog
        self.log_factor: Tensor | None = None
        self.params: list[tuple[Tensor, Tensor]] = []

    def _initial(self, d: int) -> float:
        if self.kind == "random_walk":
            return 2.38 / math.sqrt(d)
        if self.kind == "mala":
            return 1.65 * d ** (-1.0 / 6.0)  # Roberts and Rosenthal's optimal scaling
        return d ** -0.25

    def __call__(self, k: int, y: Tensor, info: Any) -> Any:
        flat = y.reshape(self.b, self.c, -1)  # (B*C, *shape) -> (B, C, D)
        if self.log_factor is None:
            self.log_factor = torch.full((self.b, 1, 1), math.log(self._initial(flat.shape[-1])),
                                         dtype=y.dtype, device=y.device)
        else:
            rate = info.acceptance_rate.reshape(self.b, self.c).mean(1)  # (B,)
            self.log_factor = (
                self.log_factor + (rate - self.target).reshape(self.b, 1, 1)
            ).clamp(math.log(1e-3), math.log(10.0))
        spread = flat.std(1, keepdim=True).clamp_min(1e-12)  # (B, 1, D)
        factor = self.log_factor.exp()
        self.params.append((factor, spread))
        return make_transition(self.kind, factor, spread, self.c, tuple(y.shape[1:]),
                               self.num_leapfrog)


class Annealing:
    """One AIS pass for fixed inputs; called with a chain count and a kernel chooser."""

    def __init__(
        self,
        energy: Energy,
        x: Tensor | None,
        base: Distribution,
        temperatures: list[float],
        beta: float,
        domain: Box | None,
        num_steps: int,
        generator: torch.Generator | None,
        *,
        is_uniform_on_domain: bool = False,
    ) -> None:
        self.energy, self.x, self.base = energy, x, base
        self.temperatures, self.beta, self.domain = temperatures, beta, domain
        self.num_steps, self.generator = num_steps, generator
        self.b = 1 if x is None else x.shape[0]
        self.is_uniform_on_domain = is_uniform_on_domain and domain is not None

    def base_log_prob(self) -> Any:
        """The function :math:`\\log p_0(y)` for rows (B*C, *shape) ordered (B, C)."""
        if self.is_uniform_on_domain:
            # log p0 is -log|box| inside; outside, the domain mask already gives +inf.
            log_volume = math.log(self.domain.volume)

            def uniform(y: Tensor) -> Tensor:
                return torch.full((y.shape[0],), -log_volume, dtype=y.dtype, device=y.device)

            return uniform
        return base_log_prob(self.base, self.b)

    def __call__(
        self, c: int, choose: Any, *, y0: Tensor | None = None, reverse: bool = False,
        fast_init: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Run C chains per input; ``choose(k, y, info)`` returns the kernel of step k.

        ``y0`` (B*C, *shape), rows ordered (B, C), replaces the draws from the base (the
        reverse pass starts from target samples); ``reverse`` runs the ladder from 1 to 0.
        With ``fast_init`` a gradient kernel's state is built from one ``energy_and_grad``
        per temperature instead of the kernel's validating ``init``.

        Returns the chains (C, B, *y_shape) and their log weights (C, B).
        """
        b, x, generator = self.b, self.x, self.generator
        n = b * c
        x_rows = None
        if x is not None:  # (B, *x_shape) -> (B*C, *x_shape), chains of input b contiguous
            x_rows = x.unsqueeze(1).expand(b, c, *x.shape[1:]).reshape(n, *x.shape[1:])
        y = base_sample(self.base, b, c, generator) if y0 is None else y0  # (B*C, *shape)
        log_p0 = self.base_log_prob()
        shape = tuple(self.base.event_shape)
        log_w = torch.zeros(n, dtype=y.dtype, device=y.device)
        bad = torch.zeros((), dtype=torch.long, device=y.device)
        info = None
        temps = self.temperatures[::-1] if reverse else self.temperatures
        energy_prev = TemperedEnergy(self.energy, log_p0, temps[0], self.beta,
                                     self.domain).forward(y, x_rows)
        k = 0
        for t in temps[1:]:
            target = TemperedEnergy(self.energy, log_p0, t, self.beta, self.domain)
            kernel = choose(k, y, info)
            if fast_init and isinstance(kernel, HMC):
                state = State(y, *target.energy_and_grad(y, x_rows))
            else:
                state = kernel.init(y, target, x_rows)
            bad += (torch.isnan(state.energy) | torch.isneginf(state.energy)).sum()
            # inf - inf (a chain outside the support of both) contributes weight 0.
            log_w = log_w + nan_to_neginf(energy_prev - state.energy)
            for i in range(self.num_steps):
                if i:
                    kernel = choose(k, state.position, info)
                state, info = kernel.step(state, target, x_rows, generator=generator)
                k += 1
            y, energy_prev = state.position, state.energy
        check_finite_energies(bad, "AIS")
        log_w = nan_to_neginf(log_w)
        return y.reshape(b, c, *shape).transpose(0, 1), log_w.reshape(b, c).T


def base_sample(
    base: Distribution, b: int, c: int, generator: torch.Generator | None
) -> Tensor:
    """Draw C chains per input; rows ordered (B, C)."""
    if tuple(base.batch_shape) == ():
        y = sample_distribution(base, (b, c), generator)
    else:
        y = sample_distribution(base, (c,), generator).transpose(0, 1)  # (C, B) -> (B, C)
    return y.reshape(b * c, *base.event_shape)


def base_log_prob(base: Distribution, b: int) -> Any:
    """:math:`\\log p_0` for rows ordered (B, C), meeting base b for a batched base."""
    if tuple(base.batch_shape) == ():
        return base.log_prob

    def log_prob(y: Tensor) -> Tensor:
        # (B*C, *shape) -> (C, B, *shape) so that column b meets base b.
        yb = y.reshape(b, -1, *y.shape[1:]).transpose(0, 1)
        return base.log_prob(yb).transpose(0, 1).reshape(-1)

    return log_prob
