r"""Diagonal mass-matrix estimates of the burn-in: running variances, pooled across chains."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Welford", "WindowVariance", "regularised", "partially_pooled"]


class Welford:
    """Running per-chain mean and sum of squared deviations of positions (no host reads).

    Example:
        >>> w = Welford(torch.zeros(2, 3))
        >>> for v in (0.0, 1.0, 2.0):
        ...     w.update(torch.full((2, 3), v))
        >>> w.count, float(w.m2[0, 0])
        (3, 2.0)
    """

    def __init__(self, like: Tensor) -> None:
        self.count = 0
        self.mean = torch.zeros_like(like)
        self.m2 = torch.zeros_like(like)

    def update(self, y: Tensor) -> None:
        self.count += 1
        delta = y - self.mean
        self.mean.add_(delta, alpha=1.0 / self.count)
        self.m2.addcmul_(delta, y - self.mean)

    def variance(self) -> Tensor:
        """The per-chain sample variance (a new tensor)."""
        return self.m2 / max(self.count - 1, 1)


def regularised(var: Tensor, n: int) -> Tensor:
    """Stan's regularised variance of ``n`` draws: (n / (n + 5)) var + 1e-3 (5 / (n + 5)).

    Example:
        >>> round(float(regularised(torch.tensor(1.0), 995)), 6)
        0.995005
    """
    return var * (n / (n + 5.0)) + 1e-3 * 5.0 / (n + 5.0)


def partially_pooled(log_var: Tensor, noise: Tensor) -> Tensor:
    r"""Per-chain log variances shrunk towards their mean over chains (empirical Bayes).

    Each chain's ``log_var`` (chains, \*event) is its true log variance plus estimation noise
    of variance ``noise`` (\*event). The spread of the true values across chains is
    estimated as :math:`\tau^2 = \max(0, s^2 - \text{noise})`, :math:`s^2` the spread of the
    estimates, and each estimate moves towards the mean :math:`\bar\ell` by the normal-normal
    posterior weight: :math:`\bar\ell + \tfrac{\tau^2}{\tau^2 + \text{noise}}(\ell_c -
    \bar\ell)` (positive-part James-Stein). Chains on one target (a spread no larger than the
    noise) share one estimate with the noise of all of them; chains in genuinely different
    regions (a funnel's neck and mouth, different conditioning inputs) keep their own.

    Example:
        >>> lv = torch.tensor([[0.1], [-0.1], [0.0]], dtype=torch.float64)
        >>> noisy, exact = torch.tensor([0.5]).double(), torch.tensor([0.0]).double()
        >>> partially_pooled(lv, noisy).flatten().tolist()  # noise >> spread: one value
        [0.0, 0.0, 0.0]
        >>> partially_pooled(lv, exact).flatten().tolist()  # no noise: each kept
        [0.1, -0.1, 0.0]
    """
    chains = log_var.shape[0]
    if chains < 3:  # the spread of two estimates says too little to pool on
        return log_var
    centre = log_var.mean(0)
    spread = log_var.var(0)
    tau2 = (spread - noise).clamp(min=0.0)
    total = tau2 + noise
    weight = torch.where(total > 0, tau2 / total.clamp(min=1e-300), torch.ones_like(total))
    return centre + weight * (log_var - centre)


class WindowVariance:
    r"""The variance of one adaptation window of ``length`` draws, per chain, from its halves.

    ``update`` feeds the window's draws; the first ``length // 2`` form its first half, the
    rest its second. ``variance(pool)`` returns Stan's regularised variance of the whole
    window: per chain (``pool="none"``), per chain shrunk across chains by
    :func:`partially_pooled` (``pool="partial"``; the noise of each chain's log variance
    estimated from the difference of its two halves' log variances,
    :math:`\mathrm{Var}[\log v] \approx \tfrac14\,\overline{(\log v_1 - \log v_2)^2}`), or
    one for all chains (``pool="full"``: the mean of the within-chain variances).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> w = WindowVariance(torch.zeros(16, 2), 200)
        >>> for t in range(200):
        ...     w.update(torch.randn(16, 2, generator=g) * torch.tensor([0.1, 3.0]))
        >>> v = w.variance("partial")
        >>> v.shape, bool((v.std(0) / v.mean(0) < 0.05).all())  # one target: shared
        (torch.Size([16, 2]), True)
    """

    POOLS = ("none", "partial", "full")

    def __init__(self, like: Tensor, length: int) -> None:
        self.like, self.half = like, length // 2
        self.halves = [Welford(like)] if self.half else [Welford(like), Welford(like)]

    def update(self, y: Tensor) -> None:
        if len(self.halves) == 1 and self.halves[0].count == self.half:
            self.halves.append(Welford(self.like))
        self.halves[-1].update(y)

    def variance(self, pool: str) -> Tensor:
        if pool not in self.POOLS:
            raise ValueError(f"pool must be one of {self.POOLS}; got {pool!r}")
        first = self.halves[0]
        n, mean, m2 = first.count, first.mean, first.m2
        if len(self.halves) == 2 and self.halves[1].count:
            second = self.halves[1]
            total = n + second.count
            delta = second.mean - mean
            m2 = m2 + second.m2 + delta.square() * (n * second.count / total)
            n = total
        var = m2 / max(n - 1, 1)
        if pool == "full":
            return regularised(var.mean(0), n)
        var = regularised(var, n)
        if pool == "none" or len(self.halves) < 2 or min(h.count for h in self.halves) < 2:
            return var
        tiny = torch.finfo(var.dtype).tiny
        halves = [regularised(h.variance(), h.count).clamp(min=tiny).log() for h in self.halves]
        noise = (halves[0] - halves[1]).square().mean(0) / 4.0
        return partially_pooled(var.clamp(min=tiny).log(), noise).exp()
