r"""The Gaussian–Bernoulli RBM: real-valued visible units, binary hidden units."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_beta, check_positive_int
from ebmlab.energies.rbm import ENUMERATION_CHUNK, BipartiteRBM

__all__ = ["GaussianBernoulliRBM"]


class GaussianBernoulliRBM(BipartiteRBM):
    r"""An RBM with real-valued visible units of fixed scales :math:`\sigma_i`.

    .. math::
        E(v, h) = \sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2} - c^\top h
                  - \sum_{ij} \frac{v_i}{\sigma_i} W_{ij} h_j

    so :math:`v \mid h \sim \mathcal N(b + \sigma \odot W h, \sigma^2/\beta)`,
    :math:`P(h_j{=}1 | v) = \sigma(\beta(c + W^\top (v/\sigma))_j)`, the free energy is
    :math:`\sum_i (v_i - b_i)^2 / 2\sigma_i^2 - \frac1\beta \sum_j \operatorname{softplus}(\beta
    (c + W^\top (v/\sigma))_j)` and, enumerating h (at most ``2^24`` states),
    :math:`\log Z_\beta = \log\sum_h e^{\beta(c^\top h + (b/\sigma)^\top W h + \|Wh\|^2/2)}
    + \sum_i \tfrac12 \log(2\pi\sigma_i^2/\beta)`.

    Args:
        num_visible: V.
        num_hidden: H.
        sigma: the visible scales, a number or ``(V,)`` (a buffer, not trained).
        init_scale: standard deviation of the initial weights.
        generator: random source of the initial weights.

    References:
        Hinton and Salakhutdinov, Science, 2006; Cho, Ilin and Raiko, ICANN 2011.

    Example:
        >>> import torch, ebmlab as eb
        >>> rbm = eb.energies.GaussianBernoulliRBM(2, 3)
        >>> rbm.free_energy(torch.zeros(4, 2)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        num_visible: int,
        num_hidden: int,
        *,
        sigma: float | Tensor = 1.0,
        init_scale: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self._init_parameters(num_visible, num_hidden, init_scale, generator)
        s = torch.as_tensor(sigma, dtype=self.weight.dtype).detach()
        s = torch.broadcast_to(s, (self.num_visible,)).clone()
        if not bool((s > 0).all() and torch.isfinite(s).all()):
            raise ValueError(f"sigma must be finite and > 0; got {s.tolist()}")
        self.register_buffer("sigma", s)

    def scaled_visible(self, v: Tensor) -> Tensor:
        return v / self.sigma

    def visible_energy(self, v: Tensor) -> Tensor:
        r"""Return :math:`\sum_i (v_i - b_i)^2 / 2\sigma_i^2`, ``(B,)``."""
        return (((v - self.visible_bias) / self.sigma) ** 2).sum(-1) * 0.5

    def visible_mean(self, h: Tensor) -> Tensor:
        r"""Return :math:`E[v \mid h] = b + \sigma \odot W h`, ``(B, V)``."""
        return self.visible_bias + self.sigma * (h @ self.weight.T)

    def sample_visible(
        self, h: Tensor, *, beta: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Draw ``v ~ N(b + sigma W h, sigma^2 / beta)``, ``(B, V)``."""
        mean = self.visible_mean(h)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                            device=mean.device)
        return mean + noise * (self.sigma / math.sqrt(beta))

    def hidden_energy(self, h: Tensor, beta: float = 1.0) -> Tensor:
        r"""Return :math:`G_\beta(h)`: v integrated out (up to the constant of log_partition)."""
        u = h @ self.weight.T  # (C, V)
        hb = h @ self.hidden_bias
        return -hb - u @ (self.visible_bias / self.sigma) - 0.5 * (u * u).sum(-1)

    def free_energy_grad(self, v: Tensor, hidden_input: Tensor, beta: float = 1.0) -> Tensor:
        r"""Return :math:`\nabla_v F_\beta = (v - b)/\sigma^2 - W\sigma(\beta a)/\sigma`."""
        pull = torch.sigmoid(beta * hidden_input) @ self.weight.T
        return (v - self.visible_bias) / self.sigma**2 - pull / self.sigma

    def check_values(self, v: Tensor, name: str = "v") -> None:
        """Gaussian visibles take any real value: nothing to check."""

    def free_energy(self, v: Tensor, *, beta: float = 1.0) -> Tensor:
        r"""Return :math:`F_\beta(v)` in closed form, ``(B,)``."""
        self._check_visible(v)
        check_beta(beta)
        return self.free_energy_from_input(v, self.hidden_input(v), beta)

    def log_partition(self, *, beta: float = 1.0, chunk_size: int = ENUMERATION_CHUNK) -> Tensor:
        r"""Return the exact :math:`\log \int\sum_h e^{-\beta E(v, h)}\,dv` (a 0-dim tensor).

        Raises:
            ValueError: if there are more than 24 hidden units.
        """
        check_beta(beta)
        check_positive_int(chunk_size, "chunk_size")
        self._check_enumerable(self.num_hidden, "hidden")
        gauss = 0.5 * torch.log(2 * math.pi * self.sigma**2 / beta).sum()
        return self._hidden_sum(beta, chunk_size) + gauss

    def log_prob(self, v: Tensor, *, log_partition: Tensor | None = None) -> Tensor:
        r"""Return the exact log density :math:`-F(v) - \log Z` of ``v`` ``(B, V)``."""
        self._check_visible(v)
        log_z = self.log_partition() if log_partition is None else log_partition
        return -self.free_energy_from_input(v, self.hidden_input(v)) - log_z
