"""How many minima did the starts miss: Chao1 and Good–Turing estimates from hit counts."""

from __future__ import annotations

from torch import Tensor

__all__ = ["estimated_count", "unseen_probability"]


def _f1_f2_n(hits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    h = hits.to(float if not hits.is_floating_point() else hits.dtype)
    return (h == 1).sum(-1).double(), (h == 2).sum(-1).double(), h.sum(-1).double()


def estimated_count(hits: Tensor) -> Tensor:
    r"""Chao1 estimate of the number of minima from the hits of each found minimum.

    :math:`\hat K = K_{obs} + \frac{n-1}{n} \frac{f_1^2}{2 f_2}`, or the bias-corrected
    :math:`K_{obs} + \frac{n-1}{n} \frac{f_1 (f_1 - 1)}{2}` when :math:`f_2 = 0`, with
    :math:`f_1, f_2` the minima hit once and twice and n the number of hits (Chao 1984;
    Chao 2005). It is a lower bound that is nearly unbiased when most basins were hit.

    Args:
        hits: (B, K) starts per minimum (0 in padded slots).

    Returns:
        (B,) float64 estimates.

    Example:
        >>> import torch
        >>> estimated_count(torch.tensor([[5, 3, 1, 1, 2]]))  # 5 + (11/12) * 2² / (2 · 1)
        tensor([6.8333], dtype=torch.float64)
    """
    f1, f2, n = _f1_f2_n(hits)
    k_obs = (hits > 0).sum(-1).double()
    w = ((n - 1) / n.clamp_min(1)).clamp_min(0)
    extra = (f1 * f1 / (2 * f2.clamp_min(1))).where(f2 > 0, f1 * (f1 - 1) / 2)
    return k_obs + w * extra


def unseen_probability(hits: Tensor) -> Tensor:
    r"""Good–Turing estimate of the probability that one more start finds a new minimum.

    :math:`\hat p_0 = f_1 / n`: the fraction of starts whose minimum no other start found.

    Args:
        hits: (B, K) starts per minimum.

    Returns:
        (B,) float64 probabilities (1 where there are no hits).

    Example:
        >>> import torch
        >>> unseen_probability(torch.tensor([[5, 3, 1, 1, 2]]))
        tensor([0.1667], dtype=torch.float64)
    """
    f1, _, n = _f1_f2_n(hits)
    return (f1 / n.clamp_min(1)).where(n > 0, 1.0)
