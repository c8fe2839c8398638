"""``Estimate`` (a log partition function with its standard error) and the estimator protocols."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ebmlab.domain import Box
    from ebmlab.energy import Energy

__all__ = ["Estimate", "Estimator", "SamplingEstimator", "estimate_from_sums"]


@dataclass(frozen=True)
class Estimate:
    r"""An estimate of :math:`\log Z` per input, with its standard error.

    Attributes:
        value: the estimate of :math:`\log Z`; shape ``()`` without ``x``, ``(B,)`` with it.
        stderr: its standard error, same shape; for grid quadrature, whose error is
            deterministic, Richardson's estimate of the discretisation error instead (see
            :class:`ebmlab.partition.Grid`).
        ess: the effective sample size :math:`(\sum w)^2 / \sum w^2` of the importance
            weights behind a Monte Carlo estimate (same shape), ``None`` for a grid.
        lower, upper: with bidirectional AIS (:class:`ebmlab.partition.AIS`), the stochastic
            lower bound (the forward estimate) and upper bound (from reverse AIS) on
            :math:`\log Z`; ``None`` otherwise.

    Example:
        >>> import torch
        >>> from ebmlab.partition import Estimate
        >>> est = Estimate.from_log_weights(torch.zeros(100))
        >>> est.value.item(), est.stderr.item(), est.ess.item()
        (0.0, 0.0, 100.0)
    """

    value: Tensor
    stderr: Tensor
    ess: Tensor | None = None
    lower: Tensor | None = None
    upper: Tensor | None = None

    @classmethod
    def from_log_weights(cls, log_weights: Tensor, dim: int = 0) -> Estimate:
        r"""Return :math:`\log \overline{w}` with its delta-method standard error along ``dim``.

        With :math:`\hat Z = \frac1N \sum_i w_i` and the sample variance :math:`s^2` of the
        :math:`w_i`, the delta method gives
        :math:`\mathrm{se}(\log \hat Z) \approx s / (\sqrt N \hat Z)`; everything is computed
        from log-sum-exps, so weights far outside the floating range are fine.

        Args:
            log_weights: log importance weights (or per-run estimates of :math:`Z`, in log).
            dim: the dimension holding the N independent draws.

        Returns:
            An :class:`Estimate` with the shape of ``log_weights`` without ``dim``.
        """
        n = log_weights.shape[dim]
        log_s1 = torch.logsumexp(log_weights, dim)
        log_s2 = torch.logsumexp(2 * log_weights, dim)
        return estimate_from_sums(log_s1, log_s2, n)


def estimate_from_sums(log_s1: Tensor, log_s2: Tensor, n: int) -> Estimate:
    r"""Build an :class:`Estimate` from :math:`\log\sum w`, :math:`\log\sum w^2` and N.

    ``value`` is :math:`\log(\sum w / N)`; the standard error is
    :math:`\sqrt{(N \sum w^2 / (\sum w)^2 - 1) / (N - 1)}` (the delta method with the unbiased
    variance), and the effective sample size :math:`(\sum w)^2 / \sum w^2`. A value of
    :math:`-\infty` (every weight zero) has an infinite standard error and ESS 0.
    """
    value = log_s1 - math.log(n)
    ratio = torch.exp(log_s2 - 2 * log_s1)  # sum w^2 / (sum w)^2, in [1/N, 1]
    dead = torch.isneginf(log_s1)
    ratio = torch.where(dead, torch.ones_like(ratio), ratio)
    if n > 1:
        stderr = torch.sqrt((n * ratio - 1).clamp_min(0) / (n - 1))
    else:
        stderr = torch.full_like(value, math.inf)
    stderr = torch.where(dead, torch.full_like(stderr, math.inf), stderr)
    ess = torch.where(dead, torch.zeros_like(ratio), 1 / ratio)
    return Estimate(value=value, stderr=stderr, ess=ess)


@runtime_checkable
class Estimator(Protocol):
    r"""What every estimator of :math:`\log Z` has (``Grid``, ``Importance``, ``AIS``).

    ``log_partition`` is the validating entry point for direct callers. The estimators of
    this package also have an un-validated ``_log_partition`` with the same signature, which
    :class:`ebmlab.Gibbs` calls once it has checked the arguments itself.
    """

    def log_partition(
        self,
        energy: Energy,
        x: Tensor | None = None,
        *,
        beta: float = 1.0,
        domain: Box | None = None,
        generator: torch.Generator | None = None,
    ) -> Estimate: ...


@runtime_checkable
class SamplingEstimator(Estimator, Protocol):
    """A Monte Carlo estimator, whose weighted draws also give (approximate) samples.

    ``weighted_samples`` returns the draws (N, B, *y_shape) and their log weights (N, B);
    :class:`ebmlab.Gibbs` resamples them (sampling-importance-resampling). ``Importance`` and
    ``AIS`` are sampling estimators; ``Grid`` is not (Gibbs samples its cells exactly).
    """

    def weighted_samples(
        self,
        energy: Energy,
        x: Tensor | None = None,
        *,
        beta: float = 1.0,
        domain: Box | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]: ...
