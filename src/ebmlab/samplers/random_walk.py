"""Random-walk Metropolis: a gradient-free kernel (the default transition of AIS)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ebmlab._checks import check_beta, check_positive, check_tensor
from ebmlab.energy import Energy, check_energy_output
from ebmlab.samplers.metropolis import nan_to_neginf
from ebmlab.samplers.state import Info

__all__ = ["RandomWalkMetropolis", "RandomWalkState"]


class RandomWalkState(NamedTuple):
    """The chains' ``position`` (N, *y_shape) and their cached ``energy`` (N,).

    Field names match :class:`ebmlab.samplers.State` (there is no gradient: the kernel needs
    none), so AIS and :func:`ebmlab.sample` read either kind of state.
    """

    position: Tensor
    energy: Tensor


class RandomWalkMetropolis:
    r"""Random-walk Metropolis for :math:`\pi(y) \propto e^{-\beta F(x, y)}`.

    Proposes :math:`y' = y + s\,\varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)`, and
    accepts with probability :math:`\min(1, e^{-\beta(F(y') - F(y))})`. Needs no gradient.
    Proposals of energy :math:`+\infty` (e.g. outside a box) are always rejected; a chain at
    :math:`+\infty` accepts any finite proposal. A proposal whose energy is NaN or
    :math:`-\infty` is rejected and reported in ``Info.is_divergent``. Its states are
    :class:`RandomWalkState` and its diagnostics :class:`ebmlab.samplers.Info`, so it runs
    under :func:`ebmlab.sample` and as an AIS transition alike.

    Args:
        step_size: the proposal scale s > 0: a number, or a tensor broadcastable to the
            chains' ``y`` (N, *y_shape), e.g. per chain or per coordinate (its values are not
            checked, to keep construction free of device synchronisation).
        beta: inverse temperature of the target.

    Raises:
        ValueError: if ``step_size`` (a number) or ``beta`` is not a finite number > 0.
        TypeError: if ``step_size`` is neither a number nor a floating tensor.

    References:
        Metropolis, Rosenbluth, Rosenbluth, Teller and Teller, "Equation of State
        Calculations by Fast Computing Machines", J. Chem. Phys. 21, 1953.

    Example:
        >>> import torch, ebmlab as eb
        >>> kernel = eb.samplers.RandomWalkMetropolis(step_size=0.5)
        >>> energy = eb.energies.Quadratic(torch.eye(2))
        >>> state = kernel.init(torch.zeros(8, 2), energy)
        >>> g = torch.Generator().manual_seed(0)
        >>> state, info = kernel.step(state, energy, generator=g)
        >>> state.position.shape, info.is_accepted.shape
        (torch.Size([8, 2]), torch.Size([8]))
        >>> eb.sample(energy, torch.zeros(8, 2), kernel, 10, generator=g).samples.shape
        torch.Size([10, 8, 2])
    """

    def __init__(self, step_size: float | Tensor, *, beta: float = 1.0) -> None:
        if isinstance(step_size, Tensor):
            check_tensor(step_size, "step_size", min_ndim=0)
        else:
            check_positive(step_size, "step_size")
        self.step_size = step_size
        self.beta = check_beta(beta)

    def __repr__(self) -> str:
        size = self.step_size if not isinstance(self.step_size, Tensor) else "tensor"
        return f"RandomWalkMetropolis(step_size={size}, beta={self.beta})"

    @torch.no_grad()
    def init(self, y0: Tensor, energy: Energy, x: Tensor | None = None) -> RandomWalkState:
        """Return the state at ``y0`` (N, *y_shape), caching its energy.

        Raises:
            TypeError: if the energy does not return a floating tensor.
            ValueError: if it returns a shape other than ``(N,)``.
        """
        e = energy.forward(y0, x)
        check_energy_output(e, y0.shape[0], type(energy).__name__)  # no synchronisation
        return RandomWalkState(position=y0, energy=e)

    @torch.no_grad()
    def step(
        self,
        state: RandomWalkState,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[RandomWalkState, Info]:
        """Make one Metropolis step of every chain; returns the new state and its diagnostics."""
        y = state.position
        noise = torch.randn(y.shape, dtype=y.dtype, device=y.device, generator=generator)
        proposal = y + self.step_size * noise
        e_new = energy.forward(proposal, x)
        is_divergent = torch.isnan(e_new) | torch.isneginf(e_new)
        # log acceptance; inf - inf (both impossible) is NaN and compares False: rejected.
        log_ratio = self.beta * (state.energy - e_new)
        log_u = torch.log(
            torch.rand(e_new.shape, dtype=y.dtype, device=y.device, generator=generator)
        )
        is_accepted = (log_u < log_ratio) & ~is_divergent
        rate = torch.exp(nan_to_neginf(log_ratio).clamp(max=0.0))
        rate = torch.where(is_divergent, torch.zeros_like(rate), rate)
        mask = is_accepted.reshape(-1, *([1] * (y.ndim - 1)))
        new = RandomWalkState(
            position=torch.where(mask, proposal, y),
            energy=torch.where(is_accepted, e_new, state.energy),
        )
        return new, Info(acceptance_rate=rate, is_accepted=is_accepted, is_divergent=is_divergent)
