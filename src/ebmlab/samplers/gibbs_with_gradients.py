"""Gibbs-with-gradients: gradient-informed single-flip Metropolis–Hastings for binary y."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ebmlab._checks import check_batch, check_beta, check_tensor
from ebmlab.energy import Energy
from ebmlab.samplers.gibbs_sampler import as_marginal
from ebmlab.samplers.metropolis import metropolis_accept, select
from ebmlab.samplers.state import Info, State

__all__ = ["GibbsWithGradients"]


class GibbsWithGradients:
    r"""Flip one bit chosen by a first-order estimate of its effect, then accept by MH.

    For binary :math:`y \in \{0,1\}^d` and :math:`f = -\beta F`, the change of f when bit i
    flips is estimated from the gradient of F (the energy's continuous extension):
    :math:`\tilde d_i(y) = -\beta (1 - 2y_i)\,\partial_i F(y)`. Bit i is proposed with
    :math:`q(i|y) = \mathrm{softmax}(\tilde d(y)/2)_i` and the flip is accepted with
    probability :math:`\min\{1, e^{f(y') - f(y)} q(i|y')/q(i|y)\}`, which makes the chain exact
    for :math:`e^{-\beta F}`; one energy and gradient evaluation per step (cached in the
    :class:`ebmlab.samplers.State`). Much faster mixing than random-site Gibbs on large d
    when the energy is smooth in y (RBMs, Ising, neural energies of binary inputs).

    Args:
        beta: inverse temperature.

    References:
        Grathwohl, Swersky, Hashemi, Duvenaud and Maddison, "Oops I took a gradient: scalable
        sampling for discrete distributions", ICML 2021, arXiv:2102.04509.

    Example:
        >>> import torch, ebmlab as eb
        >>> rbm = eb.energies.RBM(16, 4, generator=torch.Generator().manual_seed(0))
        >>> chain = eb.sample(rbm.marginal(), torch.zeros(5, 16),
        ...                   eb.samplers.GibbsWithGradients(), 30,
        ...                   generator=torch.Generator().manual_seed(0))
        >>> chain.samples.shape, chain.info.is_accepted.dtype
        (torch.Size([30, 5, 16]), torch.bool)
    """

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = check_beta(beta)

    def __repr__(self) -> str:
        return f"GibbsWithGradients(beta={self.beta})"

    @torch.no_grad()
    def init(self, y0: Tensor, energy: Any, x: Tensor | None = None) -> State:
        """Return the state at binary ``y0`` ``(chains, *y_shape)``, energy and gradient cached.

        Raises:
            TypeError: if ``energy`` is not an ``eb.Energy`` or ``y0`` not a floating tensor.
            ValueError: if ``y0`` is not binary or does not fit the energy.
        """
        energy = as_marginal(energy, self.beta)
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an eb.Energy; got {type(energy).__name__}")
        check_tensor(y0, "y0", min_ndim=2)
        energy.check_y_shape(y0, "y0")
        check_batch(y0, x, y_name="y0")
        if bool(((y0 != 0) & (y0 != 1)).any()):
            raise ValueError("y0 must be binary (entries 0 or 1) for GibbsWithGradients")
        y0 = y0.detach()
        e, g = energy.energy_and_grad(y0, x)
        return State(y0, e, g)

    def _log_proposal(self, y: Tensor, g: Tensor) -> Tensor:
        # log q(.|y) = log_softmax(d / 2), d_i = -beta (1 - 2 y_i) dF/dy_i, over flat sites.
        d = (2.0 * y - 1.0).mul_(g).flatten(1)
        return torch.log_softmax(d * (0.5 * self.beta), 1)

    @torch.no_grad()
    def step(
        self,
        state: State,
        energy: Any,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, Info]:
        """Propose one gradient-informed flip per chain and accept or reject it."""
        energy = as_marginal(energy, self.beta)
        y, e, g = state
        log_q = self._log_proposal(y, g)  # (N, d)
        # Gumbel-max draw of the site from log q.
        u = torch.rand(log_q.shape, generator=generator, dtype=log_q.dtype, device=y.device)
        site = (log_q - torch.log(-torch.log(u))).argmax(1)
        rows = torch.arange(y.shape[0], device=y.device)
        flat = y.flatten(1).clone()
        flat[rows, site] = 1.0 - flat[rows, site]
        y_new = flat.reshape(y.shape)
        e_new, g_new = energy.energy_and_grad(y_new, x)
        log_q_back = self._log_proposal(y_new, g_new)[rows, site]
        log_ratio = (e - e_new) * self.beta + log_q_back - log_q[rows, site]
        is_accepted, rate = metropolis_accept(log_ratio, generator)
        is_divergent = ~torch.isfinite(log_ratio)
        return select(is_accepted, State(y_new, e_new, g_new), state), Info(
            rate, is_accepted, is_divergent
        )
