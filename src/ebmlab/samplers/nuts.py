"""The No-U-Turn Sampler, batched over chains with one tree per chain (masked, vectorised)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_positive_int, check_target_acceptance
from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.samplers.base import Kernel, noise_like
from ebmlab.samplers.hmc import DIVERGENCE_THRESHOLD, check_mass, kinetic, mass_setup
from ebmlab.samplers.integrators import leapfrog_step
from ebmlab.samplers.state import NUTSInfo, State

__all__ = ["NUTS"]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


def _no_u_turn(p_start: Tensor, p_end: Tensor, rho: Tensor, inv_mass: float | Tensor) -> Tensor:
    # Generalised criterion (Betancourt 2017): both end velocities still point along rho.
    if isinstance(inv_mass, Tensor):
        rho = rho * inv_mass
    return (_dot(p_start, rho) > 0) & (_dot(p_end, rho) > 0)


class NUTS(Kernel):
    r"""The No-U-Turn Sampler with multinomial sampling, one tree per chain, all chains at once.

    Each step draws momenta :math:`p \sim \mathcal N(0, M/\beta)` and doubles a leapfrog
    trajectory in a random direction until it makes a U-turn (generalised criterion, checked on
    every binary sub-tree), diverges (:math:`\beta\Delta H > 1000` or non-finite) or reaches
    ``max_tree_depth``; the next state is drawn from the trajectory with weights
    :math:`e^{-\beta H}` (uniform progressive sampling inside a new sub-tree, biased
    progressive sampling when it joins the tree). Chains are advanced in lockstep: the trees
    are per chain, the doubling loop is shared and masked, so a step costs as many leapfrog
    steps as the deepest tree of the batch. To stop as soon as every chain has finished, the
    kernel reads one flag from the device after each doubling and, from the third doubling
    on, after each leapfrog step inside it: the only host synchronisations of the kernel.

    Args:
        step_size: the leapfrog step :math:`\epsilon > 0`.
        beta: the inverse temperature :math:`\beta > 0`.
        max_tree_depth: the most doublings, so at most :math:`2^{depth} - 1` leapfrog steps.
        mass: a number or a positive diagonal of shape ``y_shape``.
        domain: optional :class:`ebmlab.Box` with reflecting walls.
        target_acceptance: what step-size adaptation aims at during burn-in (0.8, Stan's
            default); ``None`` turns adaptation off.

    Raises:
        ValueError: if ``step_size``, ``beta``, ``mass`` or ``max_tree_depth`` is not positive.

    References:
        Hoffman and Gelman, "The No-U-Turn Sampler", JMLR, 2014, arXiv:1111.4246;
        Betancourt, "A Conceptual Introduction to Hamiltonian Monte Carlo", 2017,
        arXiv:1701.02434 (multinomial sampling, generalised criterion).

    Example:
        >>> import torch, ebmlab as eb
        >>> kernel = eb.samplers.NUTS(step_size=0.3)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> state = kernel.init(torch.zeros(4, 2), energy)
        >>> state, info = kernel.step(state, energy, generator=torch.Generator().manual_seed(0))
        >>> bool((info.tree_depth >= 1).all())
        True
    """

    def __init__(
        self,
        step_size: float,
        beta: float = 1.0,
        max_tree_depth: int = 10,
        *,
        mass: float | Tensor = 1.0,
        domain: Box | None = None,
        target_acceptance: float | None = 0.8,
    ) -> None:
        self._init_common(step_size, beta, domain)
        self.max_tree_depth = check_positive_int(max_tree_depth, "max_tree_depth")
        self.mass = check_mass(mass)
        self.target_acceptance = check_target_acceptance(target_acceptance)
        self._setup()

    def _setup(self) -> None:
        self._inv_mass, self._momentum_scale = mass_setup(self.mass, self.beta)

    def step(  # noqa: C901 - one algorithm, kept in one place on purpose
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, NUTSInfo]:
        """Build one tree per chain and draw the next state from it."""
        y0, e0, g0 = state
        chains = y0.shape[0]
        dtype, device = y0.dtype, y0.device
        view = (chains,) + (1,) * (y0.ndim - 1)
        beta = self.beta
        inv_mass = self._inv_mass
        if isinstance(inv_mass, Tensor) and (inv_mass.device != device or inv_mass.dtype != dtype):
            inv_mass = inv_mass.to(device, dtype)
        bounds = self._bounds(y0)
        step_size = self.step_size
        if isinstance(step_size, Tensor) and step_size.ndim:
            step_size = step_size.reshape(-1)  # per chain: (chains, 1, ...) -> (chains,)

        p0 = noise_like(y0, generator).mul_(self._momentum_scale)
        h0 = e0 + kinetic(p0, inv_mass)
        left = right = (y0, p0, g0)
        sample = state
        rho = p0
        log_w_tree = torch.zeros(chains, dtype=dtype, device=device)
        active = torch.ones(chains, dtype=torch.bool, device=device)
        is_accepted = torch.zeros_like(active)
        depth = torch.zeros(chains, dtype=torch.long, device=device)
        # Per-leapfrog log-weights and masks, reduced once per step for the Info.
        log_ws: list[Tensor] = []
        was_alive: list[Tensor] = []
        neg_inf = torch.full_like(log_w_tree, -math.inf)

        for j in range(self.max_tree_depth):
            forward = torch.rand(chains, generator=generator, dtype=dtype, device=device) < 0.5
            signed_step = torch.where(forward, 1.0, -1.0).to(dtype).mul_(step_size)
            signed_step = signed_step.view(view)
            # Leapfrog coefficients of this doubling, computed once (not per leapfrog step).
            neg_half = signed_step * -0.5
            drift = signed_step * inv_mass
            fm = forward.view(view)
            y, p, g = (torch.where(fm, r, lft) for r, lft in zip(right, left, strict=True))
            alive = active
            sub_log_w = neg_inf
            sub_y, sub_e, sub_g = y0, e0, g0
            total = torch.zeros_like(p0)
            starts: list[tuple[Tensor, Tensor]] = [(total, p)] * (j + 1)
            size = 1 << j
            for i in range(size):
                y, p, e, g = leapfrog_step(y, p, g, energy, x, neg_half, drift, bounds)
                log_w = h0 - e - kinetic(p, inv_mass)
                if beta != 1.0:
                    log_w = log_w.mul_(beta)
                log_ws.append(log_w)
                was_alive.append(alive)
                alive = alive & (log_w >= -DIVERGENCE_THRESHOLD)  # false for NaN too
                # Uniform progressive sampling inside the sub-tree: take state i w.p. w_i / W.
                new_log_w = torch.logaddexp(sub_log_w, log_w)
                u = torch.rand(chains, generator=generator, dtype=dtype, device=device)
                take = (u < (log_w - new_log_w).exp()) & alive
                sub_y = torch.where(take.view(view), y, sub_y)
                sub_e = torch.where(take, e, sub_e)
                sub_g = torch.where(take.view(view), g, sub_g)
                sub_log_w = new_log_w
                # Running momentum sums; every completed aligned block of 2^l states is a
                # sub-tree whose U-turn criterion must hold.
                for level in range(1, j + 1):
                    if i % (1 << level) == 0:
                        starts[level] = (total, p)
                total = total + p
                for level in range(1, j + 1):
                    if (i + 1) % (1 << level) == 0:
                        before, p_first = starts[level]
                        alive = alive & _no_u_turn(p_first, p, total - before, inv_mass)
                if j >= 2 and not bool(alive.any()):
                    break

            # Biased progressive sampling: move into the new sub-tree w.p. min(1, W_new/W_old).
            u = torch.rand(chains, generator=generator, dtype=dtype, device=device)
            switch = (u < (sub_log_w - log_w_tree).exp()) & alive
            sw = switch.view(view)
            sample = State(
                torch.where(sw, sub_y, sample.position),
                torch.where(switch, sub_e, sample.energy),
                torch.where(sw, sub_g, sample.grad),
            )
            is_accepted = is_accepted | switch
            log_w_tree = torch.where(alive, torch.logaddexp(log_w_tree, sub_log_w), log_w_tree)
            depth += active
            grow_right = (alive & forward).view(view)
            grow_left = (alive & ~forward).view(view)
            end = (y, p, g)
            right = tuple(torch.where(grow_right, n, o) for n, o in zip(end, right, strict=True))
            left = tuple(torch.where(grow_left, n, o) for n, o in zip(end, left, strict=True))
            rho = torch.where(alive.view(view), rho + total, rho)
            active = alive & _no_u_turn(left[1], right[1], rho, inv_mass)
            if not bool(active.any()):
                break

        # Info for every state the step computed, (n, chains) at once: a state counts if its
        # chain was still building; a divergent one counts with acceptance 0.
        stacked_w = torch.stack(log_ws)
        counted = torch.stack(was_alive)
        is_finite = stacked_w >= -DIVERGENCE_THRESHOLD
        num_steps = counted.sum(0)
        is_divergent = (counted & ~is_finite).any(0)
        accept = torch.where(counted & is_finite, stacked_w.clamp(max=0.0).exp(), 0.0)
        rate = accept.sum(0) / num_steps.clamp(min=1)
        return sample, NUTSInfo(rate, is_accepted, is_divergent, depth, num_steps)
