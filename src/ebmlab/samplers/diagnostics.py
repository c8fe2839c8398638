"""MCMC diagnostics: rank-normalised R-hat, bulk/tail ESS, MCSE, KSD, MMD, counts.

Samples are laid out ``(T, chains, *shape)``; results are per coordinate, of shape ``shape``.
The definitions are those of Vehtari et al. (2021) as implemented by Stan and ArviZ (the
tests compare with ``arviz`` to 1e-6 on the same arrays).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

# KSD and MMD live in samplers/discrepancy.py; eb.diagnostics.ksd / .mmd stay here.
from ebmlab.samplers.discrepancy import ksd, mmd

__all__ = [
    "autocorrelation",
    "ess",
    "ess_bulk",
    "ess_tail",
    "ess_mean",
    "mcse",
    "r_hat",
    "ksd",
    "mmd",
    "acceptance_rate",
    "num_divergent",
    "relative_spread",
    "stuck_chains",
    "STUCK_SPREAD",
]

# A chain whose relative_spread is below this barely moves next to the median chain.
STUCK_SPREAD = 0.01


def _check_samples(samples: object, min_steps: int = 2) -> Tensor:
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


def _autocovariance(samples: Tensor) -> Tensor:
    # FFT of the zero-padded, centred series: O(T log T) per chain and coordinate.
    n = samples.shape[0]
    centred = samples - samples.mean(0, keepdim=True)
    size = 1 << (2 * n - 1).bit_length()
    f = torch.fft.rfft(centred, n=size, dim=0)
    acov = torch.fft.irfft(f * f.conj(), n=size, dim=0)[:n]
    return acov / n


def autocorrelation(samples: Tensor, max_lag: int | None = None) -> Tensor:
    r"""Return the autocorrelation :math:`\hat\rho_t` of every chain and coordinate.

    Args:
        samples: ``(T, chains, *shape)``.
        max_lag: the largest lag returned (``T - 1`` by default).

    Returns:
        ``(max_lag + 1, chains, *shape)`` with :math:`\hat\rho_0 = 1` (biased estimator, as
        in Geyer 1992, so that the sequence is positive definite).

    Example:
        >>> import torch
        >>> rho = autocorrelation(torch.tensor([1.0, -1.0, 1.0, -1.0]).reshape(4, 1))
        >>> rho[:2, 0].tolist()
        [1.0, -0.75]
    """
    samples = _check_samples(samples)
    acov = _autocovariance(samples)
    rho = acov / acov[:1]
    return rho if max_lag is None else rho[: max_lag + 1]


def _split(samples: Tensor) -> Tensor:
    # (T, C, ...) -> (T // 2, 2C, ...): the two halves of each chain become separate chains.
    half = samples.shape[0] // 2
    return torch.cat([samples[:half], samples[samples.shape[0] - half :]], 1)


def _flat(samples: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """(T, C, *shape) -> (T, C, D) in float64 and ``shape``."""
    shape = tuple(samples.shape[2:])
    return samples.reshape(samples.shape[0], samples.shape[1], -1).double(), shape


def _ess_core(x: Tensor) -> Tensor:
    """ESS of (n, m, D) chains (already split), per coordinate: Geyer's initial monotone
    sequence exactly as Stan and ArviZ truncate it (vectorised over coordinates)."""
    n, m = x.shape[0], x.shape[1]
    acov = _autocovariance(x)  # (n, m, D)
    mean_var = acov[0].mean(0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(0).var(0)
    rho = 1.0 - (mean_var - acov.mean(1)) / var_plus  # (n, D)
    rho[0] = 1.0
    # Pairs P_k = rho_2k + rho_2k+1 for k = 0..M, M = floor((n - 3) / 2) pairs after the first.
    big_m = max((n - 3) // 2, 0)
    idx = torch.arange(big_m + 1)
    even = rho[2 * idx]
    odd = rho[(2 * idx + 1).clamp(max=n - 1)]
    pairs = even + odd  # (M + 1, D)
    # K = the first k in 1..M with P_k <= 0 (M + 1 if none).
    k = torch.arange(big_m + 1, dtype=torch.long).unsqueeze(1).expand_as(pairs)
    stop = (pairs <= 0) & (k >= 1)
    first = torch.where(stop, k, torch.full_like(k, big_m + 1)).min(0).values  # (D,)
    limited = first > big_m
    count = torch.where(limited, torch.full_like(first, big_m), first)  # pairs summed
    monotone = torch.cummin(pairs, 0).values
    summed = torch.where(k < count.unsqueeze(0), monotone, torch.zeros_like(monotone)).sum(0)
    last_even = even.gather(0, count.clamp(max=big_m).unsqueeze(0))[0]
    extra = torch.where(limited, last_even, last_even.clamp(min=0.0))
    tau = -1.0 + 2.0 * summed + extra
    total = float(n * m)
    tau = tau.clamp(min=1.0 / math.log10(total)) if total > 1 else tau
    out = total / tau
    out = torch.where(torch.isnan(rho).any(0), torch.nan, out)
    constant = (x.amax((0, 1)) - x.amin((0, 1))) < torch.finfo(torch.float64).resolution
    out = torch.where(constant, torch.full_like(out, total), out)
    return torch.where(torch.isnan(x).any(0).any(0), torch.nan, out)


def _ranks(x: Tensor) -> tuple[Tensor, Tensor]:
    """Average ranks (1-based) over all T * C values of each coordinate, and the sorted values.

    One sort: a run of equal values spans sorted positions lo..hi-1 and each gets the rank
    (lo + hi + 1) / 2, found by a running max/min over the runs' ends (no binary search).
    """
    flat = x.reshape(-1, x.shape[-1]).T.contiguous()  # (D, N)
    ordered, order = flat.sort(1)
    n = ordered.shape[1]
    pos = torch.arange(n, device=x.device).expand_as(ordered)
    same = ordered[:, 1:] == ordered[:, :-1]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[:, 1:] = ~same
    last = torch.ones_like(first)
    last[:, :-1] = ~same
    lo = torch.where(first, pos, 0).cummax(1).values
    hi = torch.where(last, pos + 1, n).flip(1).cummin(1).values.flip(1)
    ranked = (lo + hi + 1).to(x.dtype) / 2.0
    rank = torch.empty_like(ranked).scatter_(1, order, ranked)
    return rank.T.reshape(x.shape), ordered


def _z_scale(x: Tensor) -> Tensor:
    """Rank-normalise (Blom's offset 3/8) and map through the normal quantile function (NaN
    where ``x`` is NaN, so a coordinate with a NaN sample gets NaN diagnostics)."""
    rank, _ = _ranks(x)
    size = x.shape[0] * x.shape[1]
    z = torch.special.ndtri((rank - 0.375) / (size - 0.75 + 1.0))
    return z.masked_fill(x.isnan(), math.nan)


def _median(x: Tensor) -> Tensor:
    ordered = x.reshape(-1, x.shape[-1]).T.sort(1).values
    n = ordered.shape[1]
    if n % 2:
        return ordered[:, n // 2]
    return (ordered[:, n // 2 - 1] + ordered[:, n // 2]) / 2.0  # numpy's rounding


def _quantile(ordered: Tensor, q: float) -> Tensor:
    """Type-7 (linear) quantile of sorted rows (D, N)."""
    n = ordered.shape[1]
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return ordered[:, lo] + (h - lo) * (ordered[:, hi] - ordered[:, lo])


def _r_hat_core(x: Tensor) -> Tensor:
    """Classic R-hat of (n, m, D) chains (already split)."""
    n = x.shape[0]
    within = x.var(0).mean(0)
    between = n * x.mean(0).var(0)
    return ((between / within + n - 1) / n).sqrt()


def ess_bulk(samples: Tensor) -> Tensor:
    r"""Return the bulk effective sample size per coordinate (Vehtari et al. 2021).

    The values are rank-normalised over all chains (average ranks, Blom's offset 3/8, then
    the normal quantile function), the chains are split in halves, and the multi-chain ESS
    of Stan is computed on the result: with the within-chain variance W and
    :math:`\widehat{var}^+ = \tfrac{n-1}{n}W + B/n`, :math:`\hat\rho_t = 1 - (W -
    \overline{acov}_t)/\widehat{var}^+`, Geyer's initial monotone sequence truncates the sum,
    and :math:`ESS = mn/\hat\tau` with :math:`\hat\tau \ge 1/\log_{10}(mn)`.
    Invariant to monotone transformations; robust to heavy tails.

    Args:
        samples: ``(T, chains, *shape)`` with T >= 4.

    Returns:
        The bulk ESS per coordinate, shape ``shape`` (float64).

    References:
        Vehtari, Gelman, Simpson, Carpenter and Bürkner, "Rank-normalization, folding, and
        localization: an improved R-hat for assessing convergence of MCMC", Bayesian
        Analysis, 2021, arXiv:1903.08008; Geyer, "Practical Markov chain Monte Carlo", 1992.

    Example:
        >>> import torch
        >>> iid = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
        >>> 3000 < ess_bulk(iid).item() < 5000
        True
    """
    x, shape = _flat(_check_samples(samples, 4))
    return _ess_core(_z_scale(_split(x))).reshape(shape)


def ess(samples: Tensor) -> Tensor:
    """The effective sample size: an alias of :func:`ess_bulk` (rank-normalised).

    Example:
        >>> import torch
        >>> x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
        >>> bool(ess(x) == ess_bulk(x))
        True
    """
    return ess_bulk(samples)


def ess_mean(samples: Tensor) -> Tensor:
    """Return the ESS of the mean (split chains, no rank normalisation) per coordinate.

    It is the ESS behind :func:`mcse`; unlike :func:`ess_bulk` it needs a finite variance.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
        >>> 1500 < ess_mean(x).item() < 2500
        True
    """
    x, shape = _flat(_check_samples(samples, 4))
    return _ess_core(_split(x)).reshape(shape)


def ess_tail(samples: Tensor, prob: tuple[float, float] = (0.05, 0.95)) -> Tensor:
    r"""Return the tail effective sample size per coordinate (Vehtari et al. 2021).

    The smaller of the ESS of the indicators :math:`I(y \le q_{0.05})` and
    :math:`I(y \le q_{0.95})` on split chains, with :math:`q` the type-7 sample quantiles:
    how well the chains estimate the 5 % and 95 % quantiles.

    Args:
        samples: ``(T, chains, *shape)`` with T >= 4.
        prob: the two tail probabilities.

    Returns:
        The tail ESS per coordinate, shape ``shape`` (float64).

    Example:
        >>> import torch
        >>> iid = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
        >>> 2500 < ess_tail(iid).item() < 5500
        True
    """
    x, shape = _flat(_check_samples(samples, 4))
    ordered = x.reshape(-1, x.shape[-1]).T.sort(1).values
    out = None
    for p in prob:
        q = _quantile(ordered, p)
        e = _ess_core(_split((x <= q).to(x.dtype)))
        out = e if out is None else torch.minimum(out, e)
    return out.reshape(shape)


def mcse(samples: Tensor) -> Tensor:
    r"""Return the Monte Carlo standard error of the mean of every coordinate.

    :math:`\mathrm{sd}(y) / \sqrt{ESS_{mean}}`, with the standard deviation over all draws
    (``ddof=1``) and :func:`ess_mean` (ArviZ's ``mcse(method="mean")``).

    Example:
        >>> import torch
        >>> x = torch.randn(2500, 4, generator=torch.Generator().manual_seed(0))
        >>> 0.007 < mcse(x).item() < 0.013
        True
    """
    x, shape = _flat(_check_samples(samples, 4))
    sd = x.reshape(-1, x.shape[-1]).std(0)
    return (sd / _ess_core(_split(x)).sqrt()).reshape(shape)


def r_hat(samples: Tensor) -> Tensor:
    r"""Return the rank-normalised split :math:`\hat R` per coordinate (Vehtari et al. 2021).

    The maximum of the bulk :math:`\hat R` (split chains, rank-normalised) and the folded
    :math:`\hat R` (the same on :math:`|y - \mathrm{median}(y)|`), so that chains with equal
    means but different spreads are caught as well as chains in different places. Each is
    :math:`\sqrt{((n-1)/n\,W + B/n) / W}` on the split, z-scaled chains. Below 1.01 when the
    chains agree (:func:`ebmlab.sample` warns above that).

    Args:
        samples: ``(T, chains, *shape)`` with T >= 4 (a single chain is split in two).

    Returns:
        :math:`\hat R` per coordinate, shape ``shape`` (float64).

    References:
        Vehtari et al., "Rank-normalization, folding, and localization: an improved R-hat",
        Bayesian Analysis, 2021, arXiv:1903.08008.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> stuck = torch.stack([torch.zeros(100), torch.ones(100)], 1) + 0.01 * torch.randn(
        ...     100, 2, generator=g)
        >>> r_hat(stuck).item() > 1.5
        True
        >>> wide = torch.randn(1000, 4, generator=g) * torch.tensor([1.0, 1.0, 1.0, 3.0])
        >>> r_hat(wide).item() > 1.05  # equal means, one chain 3x wider: the folded part
        True
    """
    x, shape = _flat(_check_samples(samples, 4))
    split = _split(x)
    bulk = _r_hat_core(_z_scale(split))
    folded = _r_hat_core(_z_scale((split - _median(split)).abs()))
    return torch.maximum(bulk, folded).reshape(shape)


def acceptance_rate(info: Any) -> Tensor:
    """Return the mean acceptance rate of each chain over the steps of ``info`` (T, chains)."""
    return info.acceptance_rate.mean(0)


def num_divergent(info: Any) -> Tensor:
    """Return how many steps of each chain were flagged divergent in ``info`` (T, chains)."""
    return info.is_divergent.sum(0)


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
    x = _check_samples(samples, min_steps=1)
    if x.shape[0] < 4 or x.shape[1] < 3:
        return torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
    return relative_spread(x.var(0)) < spread
