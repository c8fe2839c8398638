r"""AIS transitions by preconditioned Crank-Nicolson Langevin (pCNL) around a Gaussian reference."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab.energy import Energy
from ebmlab.samplers.metropolis import metropolis_accept, select
from ebmlab.samplers.state import HMCInfo, State

__all__ = ["CrankNicolsonLangevin"]


class CrankNicolsonLangevin:
    r"""pCNL (Cotter et al. 2013): a Langevin proposal built around a Gaussian reference.

    In the coordinates :math:`z = L^{-1}(y - m)` of a reference :math:`N(m, LL^\top)` the
    target :math:`\pi(y) \propto e^{-U(y)}` reads :math:`e^{-\Phi(z)}\,N(z; 0, I)` with
    :math:`\Phi(z) = U(m + Lz) - \tfrac12 |z|^2` (up to a constant). The proposal

    .. math::
        z' = \rho z - (1 - \rho)\,\nabla\Phi(z) + \sqrt{1 - \rho^2}\,\xi,\qquad
        \rho = \frac{2 - \delta}{2 + \delta},\quad \xi \sim N(0, I)

    is a Gaussian :math:`q(z' \mid z) = N(\mu(z), (1 - \rho^2) I)`, accepted with the
    Metropolis-Hastings probability
    :math:`\min(1, e^{U(y) - U(y')}\,q(z \mid z') / q(z' \mid z))` from those explicit
    densities, so the step leaves :math:`\pi` invariant for every reference and every
    :math:`\delta > 0` (the reference's Jacobian is a constant: it cancels). :math:`\delta = 2`
    (:math:`\rho = 0`) is an independence proposal from the reference plus one gradient step;
    on a target close to the reference :math:`\Phi` is nearly constant and nearly every such
    independent draw is accepted. Small :math:`\delta`: small, MALA-like moves. One
    ``energy_and_grad`` per step, at the proposal; the proposal's point is kept exactly when
    accepted.

    Args:
        delta: :math:`\delta > 0` per row, (N, 1, ...) broadcasting against y.
        mean: the reference mean m, rows like y (N, *shape).
        scale: the reference's diagonal standard deviations, rows like y (y = m + scale * z),
            or ``None`` (then ``chol``).
        chol: the reference's Cholesky factor L (B, D, D) per input, rows of y ordered (B, C);
            or ``None`` (then ``scale``, or the identity).

    References:
        Cotter, Roberts, Stuart and White, "MCMC methods for functions: modifying old
        algorithms to make them faster", Statistical Science 28, 2013, arXiv:1202.0709.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2))
        >>> k = CrankNicolsonLangevin(torch.full((4, 1), 2.0), torch.zeros(4, 2))
        >>> y = torch.zeros(4, 2)
        >>> s, info = k.step(k.init(y, q), q, generator=torch.Generator().manual_seed(0))
        >>> bool(info.is_accepted.all())  # the reference is the target: always accepted
        True
    """

    beta = 1.0

    def __init__(self, delta: Tensor, mean: Tensor, scale: Tensor | None = None,
                 chol: Tensor | None = None) -> None:
        self.delta, self.mean, self.scale, self.chol = delta, mean, scale, chol

    def _rows(self, v: Tensor) -> Tensor:
        return v.reshape(self.chol.shape[0], -1, v[0].numel())  # (N, *shape) -> (B, C, D)

    def to_y(self, z: Tensor) -> Tensor:
        """y = m + L z (or m + scale * z)."""
        if self.chol is not None:
            return self.mean + (self._rows(z) @ self.chol.transpose(1, 2)).reshape(z.shape)
        return self.mean + (z if self.scale is None else z * self.scale)

    def to_z(self, y: Tensor) -> Tensor:
        r""":math:`z = L^{-1}(y - m)` (or (y - m) / scale)."""
        centred = y - self.mean
        if self.chol is not None:
            rows = self._rows(centred).transpose(1, 2)  # (B, D, C)
            z = torch.linalg.solve_triangular(self.chol, rows, upper=False)
            return z.transpose(1, 2).reshape(y.shape)
        return centred if self.scale is None else centred / self.scale

    def pull_back(self, g: Tensor) -> Tensor:
        r"""A gradient in z: :math:`L^\top g` (or scale * g)."""
        if self.chol is not None:
            return (self._rows(g) @ self.chol).reshape(g.shape)
        return g if self.scale is None else g * self.scale

    def init(self, y0: Tensor, energy: Energy, x: Tensor | None = None) -> State:
        """The state at ``y0``."""
        return State(y0, *energy.energy_and_grad(y0, x))

    def step(self, state: State, energy: Energy, x: Tensor | None = None, *,
             generator: torch.Generator | None = None) -> tuple[State, HMCInfo]:
        """Propose by pCNL in z, accept by Metropolis-Hastings; the new state in y."""
        y, e, g = state[0], state[1], state[2]
        delta = self.delta
        rho = (2 - delta) / (2 + delta)
        var = 1 - rho * rho  # (8 delta) / (2 + delta)^2
        z = self.to_z(y)
        mu = rho * z - (1 - rho) * (self.pull_back(g) - z)  # grad Phi = L^T g - z
        xi = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        z_new = mu + var.sqrt() * xi
        y_new = self.to_y(z_new)
        e_new, g_new = energy.energy_and_grad(y_new, x)
        mu_new = rho * z_new - (1 - rho) * (self.pull_back(g_new) - z_new)
        back = ((z - mu_new).square() / var).flatten(1).sum(1)  # -2 log q(z | z') + const
        forth = xi.square().flatten(1).sum(1)  # -2 log q(z' | z) + const
        error = (e_new - e) + 0.5 * (back - forth)
        error = torch.nan_to_num(error, nan=math.inf)
        accepted, rate = metropolis_accept(-error, generator)
        new = select(accepted, State(y_new, e_new, g_new), State(y, e, g))
        divergent = ~torch.isfinite(error) | (error > 1000.0)
        return new, HMCInfo(rate, accepted, divergent, error)
