r"""AIS transitions with persistent momentum: one leapfrog step, partial momentum refreshment."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ebmlab.energy import Energy
from ebmlab.samplers.state import HMCInfo, State

__all__ = ["MomentumState", "PersistentLeapfrog", "check_momentum"]


def check_momentum(momentum: float | None) -> float | None:
    """Validate a momentum persistence :math:`\\alpha \\in [0, 1)` (``None``: the default rule).

    Example:
        >>> check_momentum(0.9)
        0.9
    """
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, int | float):
        raise TypeError(f"momentum must be a float in [0, 1) or None; got "
                        f"{type(momentum).__name__}")
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must lie in [0, 1); got {momentum}")
    return float(momentum)


class MomentumState(NamedTuple):
    """A chain of :class:`PersistentLeapfrog`: position, energy, gradient and the whitened
    momentum :math:`p_z` (rows like the position), carried from one AIS step to the next."""

    position: Tensor
    energy: Tensor
    grad: Tensor
    momentum: Tensor


class PersistentLeapfrog:
    r"""Generalised HMC (Horowitz 1991): one leapfrog step with partial momentum refreshment.

    A step refreshes the momentum :math:`p \leftarrow \alpha p + \sqrt{1-\alpha^2}\,\xi`
    (:math:`\xi \sim N(0, I)`), takes one leapfrog step of size :math:`\epsilon` and accepts
    it with the Metropolis probability :math:`\min(1, e^{-\Delta H})`; on rejection the
    momentum is negated (Neal 2011, sec. 5.3). Each of the three leaves
    :math:`\pi(y)\,N(p; 0, I)` invariant, so the step does, for every :math:`\alpha`;
    :math:`\alpha = 0` is MALA. With :math:`\alpha` near 1 successive steps continue one
    trajectory: the chain travels like HMC with a long trajectory at one gradient per step.

    The momentum lives in whitened coordinates :math:`z = L^{-1} y` (``chol`` L (B, D, D) per
    input, or the diagonal ``scale`` rows): there it is N(0, I) and independent of y at every
    temperature, so AIS may change the preconditioner between temperatures and keep the
    momentum: the weights of the extended chain (y, p) are those of y alone. A state without
    momentum (the first step) draws a fresh one.

    Args:
        step_size: :math:`\epsilon` per row, (N, 1, ...) broadcasting against y.
        alpha: the persistence, a float in [0, 1) or per row like ``step_size``.
        scale: the diagonal preconditioner's rows (N, *shape) (y = scale * z), or ``None``.
        chol: the dense preconditioner (B, D, D), rows of y ordered (B, C); or ``None``.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2))
        >>> k = PersistentLeapfrog(torch.full((4, 1), 0.5), 0.9)
        >>> y = torch.zeros(4, 2)
        >>> s, info = k.step(k.init(y, q), q, generator=torch.Generator().manual_seed(0))
        >>> s.momentum.shape, info.acceptance_rate.shape
        (torch.Size([4, 2]), torch.Size([4]))
    """

    beta = 1.0

    def __init__(self, step_size: Tensor, alpha: float | Tensor, scale: Tensor | None = None,
                 chol: Tensor | None = None) -> None:
        self.step_size, self.alpha, self.scale, self.chol = step_size, alpha, scale, chol

    def to_y(self, v: Tensor) -> Tensor:
        """A whitened vector in y's coordinates: L v (or scale * v)."""
        if self.chol is not None:
            b = self.chol.shape[0]
            return (v.reshape(b, -1, v[0].numel()) @ self.chol.transpose(1, 2)).reshape(v.shape)
        return v if self.scale is None else v * self.scale

    def pull_back(self, g: Tensor) -> Tensor:
        r"""A gradient in whitened coordinates: :math:`L^\top g` (or scale * g)."""
        if self.chol is not None:
            b = self.chol.shape[0]
            return (g.reshape(b, -1, g[0].numel()) @ self.chol).reshape(g.shape)
        return g if self.scale is None else g * self.scale

    def init(self, y0: Tensor, energy: Energy, x: Tensor | None = None) -> State:
        """The state at ``y0`` (its momentum is drawn at the first step)."""
        return State(y0, *energy.energy_and_grad(y0, x))

    def step(self, state: State | MomentumState, energy: Energy, x: Tensor | None = None, *,
             generator: torch.Generator | None = None) -> tuple[MomentumState, HMCInfo]:
        """Refresh the momentum partly, take one leapfrog step, accept or negate."""
        y, e, g = state[0], state[1], state[2]
        xi = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        old = state.momentum if isinstance(state, MomentumState) else None
        if old is None:
            p = xi
        else:
            a = self.alpha
            keep = (1 - a * a) ** 0.5 if not isinstance(a, Tensor) else (1 - a * a).sqrt()
            p = a * old + keep * xi
        eps = self.step_size
        half = p - (0.5 * eps) * self.pull_back(g)
        y_new = y + self.to_y(eps * half)
        e_new, g_new = energy.energy_and_grad(y_new, x)
        p_new = half - (0.5 * eps) * self.pull_back(g_new)
        error = (e_new - e) + 0.5 * ((p_new * p_new).flatten(1).sum(1) - (p * p).flatten(1).sum(1))
        error = torch.nan_to_num(error, nan=math.inf)
        rate = (-error).clamp(max=0.0).exp()
        u = torch.rand(y.shape[:1], generator=generator, dtype=y.dtype, device=y.device)
        accepted = u < rate
        m = accepted.reshape(-1, *([1] * (y.ndim - 1)))
        new = MomentumState(torch.where(m, y_new, y), torch.where(accepted, e_new, e),
                            torch.where(m, g_new, g), torch.where(m, p_new, -p))
        divergent = ~torch.isfinite(error) | (error > 1000.0)
        return new, HMCInfo(rate, accepted, divergent, error)
