"""Stein variational gradient descent: interacting particles that move towards the target."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab.energy import Energy
from ebmlab.samplers.base import Kernel
from ebmlab.samplers.state import Info, State

__all__ = ["SVGD"]


class SVGD(Kernel):
    r"""Stein variational gradient descent (Liu and Wang 2016) as a particle kernel.

    The chains are particles of one set: each step moves all of them along

    .. math:: \phi(y_i) = \frac1n \sum_j \big[k(y_j, y_i)\, s(y_j) + \nabla_{y_j} k(y_j,
              y_i)\big], \qquad y_i \leftarrow y_i + \epsilon\,\phi(y_i),

    with the score :math:`s = -\beta\nabla F` and the Gaussian kernel
    :math:`k(a, b) = e^{-\|a - b\|^2 / \ell}`, :math:`\ell = \mathrm{med}^2 / \log(n + 1)`
    (median heuristic, recomputed every step). The first term pulls particles to high
    density, the second pushes them apart; the fixed point approximates the target. It is
    deterministic (``generator`` is unused) and costs :math:`O(n^2)` per step; the Info
    reports acceptance 1 and flags non-finite energies or gradients. With :func:`ebmlab.sample`
    use ``burn_in`` for the transient and read the particles of the last step
    (``chain.samples[-1]``): successive steps are not independent draws.

    Args:
        step_size: :math:`\epsilon > 0`.
        beta: the inverse temperature.

    References:
        Liu and Wang, "Stein variational gradient descent: a general purpose Bayesian
        inference algorithm", NeurIPS 2016, arXiv:1608.04471.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2))
        >>> y0 = torch.randn(100, 2, generator=torch.Generator().manual_seed(0)) * 0.1 + 2
        >>> chain = eb.sample(q, y0, eb.samplers.SVGD(0.2), 1, burn_in=300)
        >>> bool(chain.samples[-1].mean(0).abs().max() < 0.1)
        True
    """

    target_acceptance = None

    def __init__(self, step_size: float, beta: float = 1.0) -> None:
        self._init_common(step_size, beta, None)
        self._setup()

    def step(
        self,
        state: State,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[State, Info]:
        """Move every particle along the SVGD direction."""
        y, _, g = state
        n = y.shape[0]
        flat = y.flatten(1)
        score = g.flatten(1) * -self.beta
        sq = torch.cdist(flat, flat).square()
        med = sq.flatten().median() if n > 1 else sq.new_ones(())
        ell = (med / math.log(n + 1.0)).clamp_min(1e-12)
        k = torch.exp(-sq / ell)  # (n, n), symmetric
        # sum_j grad_{y_j} k(y_j, y_i) = sum_j (2 / ell) (y_i - y_j) k_ij
        repulse = (2.0 / ell) * (flat * k.sum(1, keepdim=True) - k @ flat)
        phi = (k @ score + repulse) / n
        y_new = (flat + self.step_size * phi).reshape(y.shape)
        e, g_new = energy.energy_and_grad(y_new, x)
        w = g_new.flatten(1).sum(1).add(e)
        is_divergent = (w - w).ne(0.0)
        ones = torch.ones_like(e)
        return State(y_new, e, g_new), Info(ones, ones.bool(), is_divergent)
