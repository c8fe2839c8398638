r"""Noise negatives with a log density: uniform in a box and isotropic Gaussian (NCE's noise).

Both follow the negatives' call signature ``negatives(energy, y, x=None, *, generator)`` and
add ``log_prob``; :mod:`ebmlab.training.negatives` re-exports them with the other sources.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_positive, check_positive_int
from ebmlab.domain import Box
from ebmlab.energy import Energy

__all__ = ["Uniform", "Gaussian"]


class Uniform:
    r"""Negatives drawn uniformly in a :class:`ebmlab.Box` (the noise of NCE-like losses).

    Args:
        domain: the box.
        num: negatives per positive (``None``: one, shaped like ``y``).

    Example:
        >>> import torch, ebmlab as eb
        >>> neg = eb.training.negatives.Uniform(eb.Box([-1.0], [1.0]), num=3)
        >>> neg(None, torch.zeros(2, 1), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 1])
    """

    def __init__(self, domain: Box, *, num: int | None = None) -> None:
        if not isinstance(domain, Box):
            raise TypeError(f"domain must be an ebmlab.Box; got {type(domain).__name__}")
        self.domain = domain
        self.num = None if num is None else check_positive_int(num, "num")

    def __repr__(self) -> str:
        return f"Uniform({self.domain!r}, num={self.num})"

    def log_prob(self, y: Tensor, event_ndim: int | None = None) -> Tensor:
        """Return the log density :math:`-\\log |D|` inside the box and ``-inf`` outside.

        ``event_ndim`` is accepted for symmetry with :class:`Gaussian`; the box knows it.
        """
        batch = y.shape[: y.ndim - len(self.domain.shape)]
        inside = self.domain.contains(y)
        value = torch.full(batch, -math.log(self.domain.volume), dtype=y.dtype, device=y.device)
        return torch.where(inside, value, torch.full_like(value, -math.inf))

    def __call__(
        self,
        energy: Energy | None,
        y: Tensor,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        b = y.shape[0]
        shape = (b,) if self.num is None else (b, self.num)
        return self.domain.sample(*shape, generator=generator, dtype=y.dtype, device=y.device)


class Gaussian:
    r"""Negatives drawn from an isotropic Gaussian :math:`N(\mu, s^2 I)`, with its log density.

    The usual noise of noise-contrastive estimation (:func:`ebmlab.losses.nce` needs
    :meth:`log_prob`): it should cover the data, so pick ``scale`` about the data's spread.

    Args:
        scale: standard deviation s.
        mean: the centre :math:`\mu`, a number or a tensor of the event shape.
        num: negatives per positive (``None``: one, shaped like ``y``).

    Example:
        >>> import torch, ebmlab as eb
        >>> noise = eb.training.negatives.Gaussian(2.0, num=4)
        >>> noise(None, torch.zeros(3, 2), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 4, 2])
        >>> round(float(noise.log_prob(torch.zeros(1, 2))), 4)  # -log(2 pi s^2)
        -3.2242
    """

    def __init__(
        self, scale: float = 1.0, *, mean: float | Tensor = 0.0, num: int | None = None
    ) -> None:
        self.scale = check_positive(scale, "scale")
        self.mean = mean if isinstance(mean, Tensor) else float(mean)
        self.num = None if num is None else check_positive_int(num, "num")

    def __repr__(self) -> str:
        return f"Gaussian(scale={self.scale}, num={self.num})"

    def log_prob(self, y: Tensor, event_ndim: int = 1) -> Tensor:
        r"""Return :math:`\log N(y; \mu, s^2 I)`, summed over the last ``event_ndim`` dims."""
        z = (y - self.mean) / self.scale
        dims = tuple(range(y.ndim - event_ndim, y.ndim))
        d = math.prod(y.shape[y.ndim - event_ndim :])
        return -0.5 * (z * z).sum(dims) - d * (math.log(self.scale) + 0.5 * math.log(2 * math.pi))

    def __call__(
        self,
        energy: Energy | None,
        y: Tensor,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        b = y.shape[0]
        shape = (b, *y.shape[1:]) if self.num is None else (b, self.num, *y.shape[1:])
        z = torch.randn(shape, generator=generator, dtype=y.dtype, device=y.device)
        return self.mean + self.scale * z
