"""Reproducible draws from ``torch.distributions``, which take no generator."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = ["sample_distribution"]


def sample_distribution(
    distribution: Distribution, shape: tuple[int, ...], generator: torch.Generator | None
) -> Tensor:
    """Draw ``distribution.sample(shape)`` reproducibly from a CPU ``generator``.

    A seed is drawn from ``generator`` (the global generator when ``None``) and the sample is
    taken under ``torch.random.fork_rng`` with the global generators seeded from it, so the
    draw depends on ``generator`` alone and the global CPU state is restored afterwards.

    Example:
        >>> import torch
        >>> normal = torch.distributions.Normal(0.0, 1.0)
        >>> a = sample_distribution(normal, (3,), torch.Generator().manual_seed(0))
        >>> b = sample_distribution(normal, (3,), torch.Generator().manual_seed(0))
        >>> torch.equal(a, b)
        True
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return distribution.sample(torch.Size(shape))
