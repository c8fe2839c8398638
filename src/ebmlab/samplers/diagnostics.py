"""MCMC diagnostics: effective sample size, split R-hat, autocorrelation, acceptance, divergences.

Samples are laid out ``(T, chains, *shape)``; results are per coordinate, of shape ``shape``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["autocorrelation", "ess", "r_hat", "acceptance_rate", "num_divergent"]


def _check_samples(samples: object, min_steps: int = 2) -> Tensor:
    if not isinstance(samples, Tensor) or not samples.is_floating_point():
        raise TypeError(f"samples must be a floating tensor (T, chains, ...); got {samples!r:.60}")
    if samples.ndim < 2 or samples.shape[0] < min_steps:
        raise ValueError(
            f"samples must have shape (T, chains, ...) with T >= {min_steps}; "
            f"got {tuple(samples.shape)}"
        )
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


def ess(samples: Tensor) -> Tensor:
    r"""Return the effective sample size of the mean of every coordinate, over all chains.

    The multi-chain estimator of Stan on split chains: with within-chain variance W and
    :math:`\widehat{var}^+ = \tfrac{n-1}{n} W + B/n`, the combined autocorrelation is
    :math:`\hat\rho_t = 1 - (W - \overline{acov}_t) / \widehat{var}^+`; Geyer's initial
    monotone sequence truncates the sum of paired lags, and
    :math:`ESS = mn / (-1 + 2\sum_k P_k)` for m split chains of length n.

    Args:
        samples: ``(T, chains, *shape)`` with T >= 4.

    Returns:
        ESS per coordinate, shape ``shape``; at most :math:`mn \log_{10}(mn)` (Stan's cap).

    References:
        Geyer, "Practical Markov chain Monte Carlo", Stat. Sci., 1992; Vehtari et al.,
        "Rank-normalization, folding, and localization: an improved R-hat", Bayesian
        Analysis, 2021, arXiv:1903.08008.

    Example:
        >>> import torch
        >>> iid = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
        >>> 3000 < ess(iid).item() < 5000
        True
    """
    samples = _split(_check_samples(samples, 4))
    n, m = samples.shape[0], samples.shape[1]
    acov = _autocovariance(samples)  # (n, m, ...)
    chain_var = acov[0] * n / (n - 1)
    within = chain_var.mean(0)
    var_plus = within * (n - 1) / n
    if m > 1:
        var_plus = var_plus + samples.mean(0).var(0)
    rho = 1.0 - (within - acov.mean(1)) / var_plus  # (n, ...)
    rho[0] = 1.0
    pairs = n // 2
    p = rho[: 2 * pairs].reshape(pairs, 2, *rho.shape[1:]).sum(1)  # (n, ...) -> (n/2, ...)
    # Initial positive sequence, then initial monotone sequence (Geyer 1992).
    keep = torch.cumprod((p > 0).to(p.dtype), 0)
    p = torch.cummin(torch.where(keep > 0, p, torch.zeros_like(p)), 0).values
    tau = -1.0 + 2.0 * p.sum(0)
    total = float(n * m)
    cap = total * torch.log10(torch.tensor(total, dtype=p.dtype))
    out = torch.minimum(total / tau.clamp(min=1e-12), cap)
    return torch.where(torch.isfinite(var_plus) & (var_plus > 0), out, torch.nan)


def r_hat(samples: Tensor) -> Tensor:
    r"""Return the split potential scale reduction :math:`\hat R` per coordinate.

    Each chain is cut in two halves; with W the mean within-half variance and B/n the
    variance of the half means, :math:`\hat R = \sqrt{((n-1)/n\,W + B/n) / W}`. Close to 1
    (below about 1.01) when the chains mix; well above 1 when they sample different regions.

    Args:
        samples: ``(T, chains, *shape)`` with T >= 4.

    Returns:
        :math:`\hat R` per coordinate, shape ``shape``.

    References:
        Gelman et al., "Bayesian Data Analysis", 3rd ed., 2013, sec. 11.4; Vehtari et al.,
        2021, arXiv:1903.08008.

    Example:
        >>> import torch
        >>> stuck = torch.stack([torch.zeros(100), torch.ones(100)], 1) + 0.01 * torch.randn(
        ...     100, 2, generator=torch.Generator().manual_seed(0))
        >>> r_hat(stuck).item() > 10
        True
    """
    samples = _split(_check_samples(samples, 4))
    n = samples.shape[0]
    within = samples.var(0).mean(0)
    between = samples.mean(0).var(0)
    var_plus = within * (n - 1) / n + between
    return (var_plus / within).sqrt()


def acceptance_rate(info: Any) -> Tensor:
    """Return the mean acceptance rate of each chain over the steps of ``info`` (T, chains)."""
    return info.acceptance_rate.mean(0)


def num_divergent(info: Any) -> Tensor:
    """Return how many steps of each chain were flagged divergent in ``info`` (T, chains)."""
    return info.is_divergent.sum(0)
