"""Stuck-chain detection from how far each chain moves: ``relative_spread``, ``stuck_chains``.

Re-exported by :mod:`ebmlab.samplers.diagnostics` (``eb.diagnostics.stuck_chains``, ...).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["relative_spread", "stuck_chains", "check_samples", "STUCK_SPREAD"]

# A chain whose relative_spread is below this barely moves next to the median chain.
STUCK_SPREAD = 0.01


def check_samples(samples: object, min_steps: int = 2) -> Tensor:
    """Return ``samples`` if it is a floating ``(T, chains, ...)`` tensor with ``T >= min_steps``.

    Raises:
        TypeError: if ``samples`` is not a floating tensor.
        ValueError: if it has fewer than 2 dimensions, ``min_steps`` samples or one chain.

    Example:
        >>> check_samples(torch.zeros(4, 2)).shape
        torch.Size([4, 2])
    """
    if not isinstance(samples, Tensor) or not samples.is_floating_point():
        raise TypeError(f"samples must be a floating tensor (T, chains, ...); got {samples!r:.60}")
    if samples.ndim < 2 or samples.shape[0] < min_steps:
        raise ValueError(
            f"samples must have shape (T, chains, ...) with T >= {min_steps}; "
            f"got {tuple(samples.shape)}"
        )
    if samples.shape[1] == 0:
        raise ValueError(f"samples must have at least one chain; got shape {tuple(samples.shape)}")
    return samples


def relative_spread(variance: Tensor) -> Tensor:
    r"""How far each chain moves next to the median chain: per-chain geometric mean ratio.

    For per-chain, per-coordinate variances :math:`v_{ck}` (over time) and the median chain's
    :math:`m_k = \mathrm{median}_c\, v_{ck}`, returns
    :math:`\exp(\tfrac1K \sum_k \log\max(v_{ck}/m_k, 10^{-6}))` per chain (coordinates
    with :math:`m_k = 0` left out). About 1 for chains exploring the same distribution; far
    below 1 for a chain frozen in place or trapped in a narrow region (a funnel's neck). The
    geometric mean needs every coordinate to be small, so many coordinates do not multiply
    the false alarms. Fewer than 3 chains: all ones.

    Args:
        variance: ``(chains, *shape)`` variances of each chain's positions.

    Returns:
        ``(chains,)``.

    Example:
        >>> v = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1e-4, 2e-4]])
        >>> relative_spread(v).double().round(decimals=4).tolist()
        [1.0, 1.0, 1.0, 0.0001]
    """
    flat = variance.reshape(variance.shape[0], -1)
    if flat.shape[0] < 3:
        return torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device)
    ref = flat.median(0).values
    used = (ref > 0) & torch.isfinite(ref)
    ratio = (flat[:, used] / ref[used]).clamp(min=1e-6)
    if ratio.shape[1] == 0:
        return torch.ones(flat.shape[0], dtype=flat.dtype, device=flat.device)
    return ratio.log().mean(1).exp()


def stuck_chains(samples: Tensor, spread: float = STUCK_SPREAD) -> Tensor:
    """Flag the chains that barely move next to the others (``relative_spread < spread``).

    A chain whose acceptance looks healthy can still be stuck: NUTS or MALA deep in a funnel's
    neck adapts a tiny step and accepts it, yet its positions vary far less than any other
    chain's. Each chain's variance over time, per coordinate, is compared with the median
    chain's (:func:`relative_spread`); with enough samples a healthy chain's ratio is of
    order 1 and the chance of one below 0.01 is negligible (the small-ball probability of a
    moving chain). Fewer than 4 samples or 3 chains: no chain is flagged.

    Args:
        samples: ``(T, chains, *shape)``.
        spread: the threshold (default ``STUCK_SPREAD`` = 0.01).

    Returns:
        ``(chains,)`` booleans.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(200, 4, 2, generator=g)
        >>> x[:, 2] = 0.3 + 1e-3 * x[:, 2]  # chain 2 is frozen near 0.3
        >>> stuck_chains(x).tolist()
        [False, False, True, False]
    """
    x = check_samples(samples, min_steps=1)
    if x.shape[0] < 4 or x.shape[1] < 3:
        return torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
    # Two-pass variance over time (torch.var's Welford is ~20x slower over dim 0 on the CPU).
    variance = (x - x.mean(0)).square().sum(0) / (x.shape[0] - 1)
    return relative_spread(variance) < spread
