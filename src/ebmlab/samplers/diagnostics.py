"""MCMC diagnostics: rank-normalised R-hat, bulk/tail ESS, MCSE, KSD, MMD, counts.

Samples are laid out ``(T, chains, *shape)``; results are per coordinate, of shape ``shape``.
The definitions are those of Vehtari et al. (2021) as implemented by Stan and ArviZ (the
tests compare with ``arviz`` to 1e-6 on the same arrays).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

# KSD and MMD live in samplers/discrepancy.py, the movement checks in samplers/movement.py;
# eb.diagnostics.ksd, .mmd, .stuck_chains, ... stay here.
from ebmlab.samplers.discrepancy import ksd, mmd
from ebmlab.samplers.movement import STUCK_SPREAD, relative_spread, stuck_chains
from ebmlab.samplers.movement import check_samples as _check_samples
from ebmlab.samplers.ranks import (
    blom_scores,
    folded_sort,
    median_of_sorted,
    normal_scores,
    sort_rows,
    sorted_values,
)

__all__ = [
    "autocorrelation",
    "ess",
    "ess_bulk",
    "ess_tail",
    "ess_mean",
    "mcse",
    "r_hat",
    "rank_diagnostics",
    "RankDiagnostics",
    "ksd",
    "mmd",
    "acceptance_rate",
    "num_divergent",
    "relative_spread",
    "stuck_chains",
    "STUCK_SPREAD",
]

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


def _split(x: Tensor) -> Tensor:
    # (D, C, T) -> (D, 2C, T // 2): the two halves of each chain become separate chains.
    half = x.shape[2] // 2
    return torch.cat([x[..., :half], x[..., x.shape[2] - half :]], 1)


def _flat(samples: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """(T, C, *shape) -> (D, C, T), contiguous float64 (each chain's draws one row), and
    ``shape``: every reduction below runs along contiguous memory."""
    shape = tuple(samples.shape[2:])
    x = samples.detach().reshape(samples.shape[0], samples.shape[1], -1).permute(2, 1, 0)
    return x.to(torch.float64, memory_format=torch.contiguous_format), shape


def _var(x: Tensor, dim: int) -> Tensor:
    # Two-pass sample variance (ddof 1): ~5x faster than torch.var's Welford on the CPU.
    centred = x - x.mean(dim, keepdim=True)
    return centred.square().sum(dim) / (x.shape[dim] - 1)


def _mean_autocovariance(x: Tensor) -> Tensor:
    """The chains' (biased) autocovariances averaged over the chains: (D, m, n) -> (D, n).

    Short chains (n <= 256 and n <= 4m): the Gram matrix over time of the centred chains (one matrix
    product per coordinate) summed along its diagonals; longer ones: one FFT, the power
    spectra summed over the chains before the inverse FFT. Equal to the mean of
    :func:`autocorrelation`'s autocovariances to float rounding.
    """
    d, m, n = x.shape
    centred = x - x.mean(2, keepdim=True)
    # Measured: the matrix product beats torch's CPU FFT up to n ~ 400; n <= 4m keeps the
    # Gram matrices no larger than 4x the input.
    if n <= 256 and n <= 4 * m:
        gram = centred.transpose(1, 2) @ centred  # (D, n, n)
        # Row t shifted left by t: skew[:, t, k] = gram[:, t, t + k] (zero past the end).
        flat = torch.nn.functional.pad(gram, (0, n)).reshape(d, -1)
        skew = torch.nn.functional.pad(flat, (0, n)).reshape(d, n, 2 * n + 1)[:, :, :n]
        return skew.sum(1) / (n * m)
    size = 1 << (2 * n - 1).bit_length()
    f = torch.fft.rfft(centred, n=size, dim=-1)  # (D, m, F)
    power = (f.real.square() + f.imag.square()).sum(1)  # (D, F)
    return torch.fft.irfft(power.to(f.dtype), n=size, dim=-1)[:, :n] / (n * m)


def _ess_core(x: Tensor) -> Tensor:
    """ESS of (D, m, n) chains (already split), per coordinate: Geyer's initial monotone
    sequence exactly as Stan and ArviZ truncate it (vectorised over coordinates)."""
    m, n = x.shape[1], x.shape[2]
    acov = _mean_autocovariance(x)  # (D, n)
    mean_var = acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + _var(x.mean(2), 1)
    rho = 1.0 - (mean_var.unsqueeze(1) - acov) / var_plus.unsqueeze(1)  # (D, n)
    rho[:, 0] = 1.0
    # Pairs P_k = rho_2k + rho_2k+1 for k = 0..M, M = floor((n - 3) / 2) pairs after the first.
    big_m = max((n - 3) // 2, 0)
    idx = torch.arange(big_m + 1, device=x.device)
    even = rho[:, 2 * idx]
    odd = rho[:, (2 * idx + 1).clamp(max=n - 1)]
    pairs = even + odd  # (D, M + 1)
    # K = the first k in 1..M with P_k <= 0 (M + 1 if none).
    k = idx.unsqueeze(0).expand_as(pairs)
    stop = (pairs <= 0) & (k >= 1)
    first = torch.where(stop, k, big_m + 1).amin(1)  # (D,)
    limited = first > big_m
    count = torch.where(limited, big_m, first)  # pairs summed
    monotone = torch.cummin(pairs, 1).values
    summed = torch.where(k < count.unsqueeze(1), monotone, 0.0).sum(1)
    last_even = even.gather(1, count.clamp(max=big_m).unsqueeze(1))[:, 0]
    extra = torch.where(limited, last_even, last_even.clamp(min=0.0))
    tau = -1.0 + 2.0 * summed + extra
    total = float(n * m)
    tau = tau.clamp(min=1.0 / math.log10(total)) if total > 1 else tau
    out = total / tau
    out = torch.where(torch.isnan(rho).any(1), torch.nan, out)
    flat = x.reshape(x.shape[0], -1)
    constant = (flat.amax(1) - flat.amin(1)) < torch.finfo(torch.float64).resolution
    out = torch.where(constant, total, out)
    return torch.where(flat.isnan().any(1), torch.nan, out)


def _z_scale(x: Tensor) -> Tensor:
    """Rank-normalise (average ranks over all values of a coordinate, Blom's offset 3/8) and
    map through the normal quantile function; NaN where ``x`` is NaN (so a coordinate with a
    NaN sample gets NaN diagnostics)."""
    return normal_scores(*sort_rows(x.reshape(x.shape[0], -1))).reshape(x.shape)


def _rank_r_hat(split: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rank-normalised R-hat of split chains (D, m, n), the bulk z-scores and the sorted rows.

    One sort serves the bulk z-scores (shared with the bulk ESS), the median and, by a merge,
    the ranks of the folded values.
    """
    ordered, order = sort_rows(split.reshape(split.shape[0], -1))
    table = blom_scores(ordered.shape[1], ordered.dtype, ordered.device)
    z = normal_scores(ordered, order, table).reshape(split.shape)
    folded = folded_sort(ordered, order, median_of_sorted(ordered))
    z_folded = normal_scores(*folded, table).reshape(split.shape)
    return torch.maximum(_r_hat_core(z), _r_hat_core(z_folded)), z, ordered


def _quantile(ordered: Tensor, q: float) -> Tensor:
    """Type-7 (linear) quantile of sorted rows (D, N)."""
    n = ordered.shape[1]
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return ordered[:, lo] + (h - lo) * (ordered[:, hi] - ordered[:, lo])


def _r_hat_core(x: Tensor) -> Tensor:
    """Classic R-hat of (D, m, n) chains (already split)."""
    n = x.shape[2]
    within = _var(x, 2).mean(1)
    between = n * _var(x.mean(2), 1)
    return ((between / within + n - 1) / n).sqrt()


def _sorted_draws(x: Tensor) -> Tensor:
    return sorted_values(x.reshape(x.shape[0], -1))


def _indicators(split: Tensor, ordered: Tensor, prob: tuple[float, ...]) -> list[Tensor]:
    # I(y <= q_p) for the type-7 quantiles q_p of all draws (sorted rows ``ordered``).
    return [(split <= _quantile(ordered, p)[:, None, None]).to(split.dtype) for p in prob]


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
    ordered = _sorted_draws(x)
    per = _ess_core(torch.cat(_indicators(_split(x), ordered, prob))).split(x.shape[0])
    out = per[0]
    for e in per[1:]:
        out = torch.minimum(out, e)
    # NaN for a coordinate with a NaN sample (its indicators would look finite).
    return out.masked_fill(ordered[:, -1].isnan(), math.nan).reshape(shape)


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
    sd = _var(x.reshape(x.shape[0], -1), 1).sqrt()
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
    return _rank_r_hat(_split(x))[0].reshape(shape)


class RankDiagnostics(NamedTuple):
    """What :func:`rank_diagnostics` returns: per-coordinate tensors and the chains used."""

    r_hat: Tensor
    ess_bulk: Tensor
    ess_tail: Tensor
    ess_mean: Tensor
    mcse: Tensor
    num_chains_used: int


def rank_diagnostics(
    samples: Tensor, max_chains: int | None = None, *, tail: bool = True
) -> RankDiagnostics:
    """Return :func:`r_hat`, :func:`ess_bulk`, :func:`ess_tail`, :func:`ess_mean` and
    :func:`mcse` together, from one sort (what :meth:`ebmlab.Chain.summary` reports).

    The same figures as the five functions (to float rounding) in a fraction of their time:
    the rank normalisation is computed once and shared by the bulk R-hat and the bulk ESS, the
    folded R-hat's ranks come from the same sort by a linear merge, the tail quantiles from it
    as well, and the autocorrelations of the four ESS are one FFT.

    Args:
        samples: ``(T, chains, *shape)`` with T >= 4.
        max_chains: with more chains than this, the figures are computed on ``max_chains`` of
            them, evenly spaced (chains ``i * chains // max_chains``, ``i < max_chains``: a
            fixed, deterministic subset) and the three ESS are scaled by
            ``chains / max_chains`` (an estimate for all the chains, unbiased when the chains
            are exchangeable); R-hat and the MCSE's standard deviation are the subset's.
            ``None``: all chains.
        tail: also the tail ESS, the mean ESS and the MCSE (``False``: they are NaN, and the
            call costs about a quarter less; the end-of-run warning needs only R-hat and the
            bulk ESS).

    Returns:
        A :class:`RankDiagnostics` of float64 tensors of shape ``shape`` and the number of
        chains used.

    Raises:
        ValueError: if ``max_chains`` is not a positive int (or T < 4).

    Example:
        >>> import torch
        >>> x = torch.randn(100, 8, 3, generator=torch.Generator().manual_seed(0))
        >>> d = rank_diagnostics(x)
        >>> torch.allclose(d.r_hat, r_hat(x)) and torch.allclose(d.ess_tail, ess_tail(x))
        True
        >>> rank_diagnostics(x, max_chains=4).num_chains_used
        4
    """
    if max_chains is not None and (
        isinstance(max_chains, bool) or not isinstance(max_chains, int) or max_chains < 1
    ):
        raise ValueError(f"max_chains must be None or a positive int; got {max_chains!r}")
    x, shape = _flat(_check_samples(samples, 4))
    chains = x.shape[1]
    scale = 1.0
    if max_chains is not None and chains > max_chains:
        x = x[:, torch.arange(max_chains, device=x.device) * chains // max_chains]
        scale = chains / max_chains
    d = x.shape[0]
    split = _split(x)
    rhat, z, ordered = _rank_r_hat(split)
    if not tail:
        nan = torch.full_like(rhat, math.nan)
        bulk = _ess_core(z) * scale
        return RankDiagnostics(rhat.reshape(shape), bulk.reshape(shape), nan.reshape(shape),
                               nan.reshape(shape), nan.reshape(shape), x.shape[1])
    if x.shape[2] % 2:  # the middle draw is not in the split chains but is in the quantiles
        ordered = _sorted_draws(x)
    lo, hi = _indicators(split, ordered, (0.05, 0.95))
    bulk, mean, tail_lo, tail_hi = _ess_core(torch.cat([z, split, lo, hi])).split(d)
    tail = torch.minimum(tail_lo, tail_hi).masked_fill(ordered[:, -1].isnan(), math.nan)
    sd = _var(x.reshape(d, -1), 1).sqrt()
    mcse = sd / (mean * scale).sqrt()
    return RankDiagnostics(
        rhat.reshape(shape), (bulk * scale).reshape(shape), (tail * scale).reshape(shape),
        (mean * scale).reshape(shape), mcse.reshape(shape), x.shape[1],
    )


def acceptance_rate(info: Any) -> Tensor:
    """Return the mean acceptance rate of each chain over the steps of ``info`` (T, chains)."""
    return info.acceptance_rate.mean(0)


def num_divergent(info: Any) -> Tensor:
    """Return how many steps of each chain were flagged divergent in ``info`` (T, chains)."""
    return info.is_divergent.sum(0)
