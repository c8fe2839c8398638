r"""Likelihood losses: negative log-likelihood (NLL/MMI), MEE and contrastive divergence.

The Gibbs distribution of an energy is
:math:`P_\beta(y \mid x) = e^{-\beta F(x, y)} / Z_\beta(x)` with
:math:`Z_\beta(x) = \int e^{-\beta F(x, y)}\,dy`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab._checks import check_beta, check_same_device, check_tensor
from ebmlab.losses._common import (
    check_pair,
    check_reduction,
    check_set,
    reduce,
)

__all__ = ["nll", "mee", "contrastive_divergence"]


def _log_weights(log_weights: Tensor | float | None, e_all: Tensor) -> Tensor | float:
    if log_weights is None:
        return 0.0
    if isinstance(log_weights, bool) or not isinstance(log_weights, (int, float, Tensor)):
        raise TypeError(
            f"log_weights must be a number, a tensor or None; got {type(log_weights).__name__}"
        )
    if isinstance(log_weights, Tensor):
        if log_weights.dtype != e_all.dtype:
            raise TypeError(
                f"log_weights has dtype {log_weights.dtype} but e_all has dtype {e_all.dtype}; "
                "expected equal dtypes"
            )
        check_same_device(log_weights, e_all, "log_weights", "e_all")
        try:
            shape = torch.broadcast_shapes(log_weights.shape, e_all.shape)
        except RuntimeError:
            shape = None
        if shape != e_all.shape:
            raise ValueError(
                f"log_weights has shape {tuple(log_weights.shape)}; expected a shape that "
                f"broadcasts to e_all's shape {tuple(e_all.shape)}, e.g. (K,)"
            )
        return log_weights
    return float(log_weights)


def nll(
    e_pos: Tensor,
    e_all: Tensor | None = None,
    *,
    beta: float = 1.0,
    log_weights: Tensor | float | None = None,
    log_partition: Tensor | float | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Compute the NLL :math:`-\log P_\beta(y \mid x) = \beta E_C + \log Z_\beta(x)`.

    :math:`\log Z_\beta(x) = \log \int e^{-\beta F(x, y)}\,dy` is taken from exactly one of:

    - ``e_all``, the energies of K answers per example, with optional ``log_weights``
      :math:`\log w_k`: :math:`\log Z \approx \operatorname{logsumexp}_k(-\beta E_k + \log w_k)`.
      For a discrete answer set use no weights (the sum over answers is exact: the MMI loss).
      On a quadrature grid pass ``log_weights = log(cell_volume)`` (exact up to the quadrature
      error). With K samples :math:`y_k \sim q` pass ``log_weights = -log q(y_k) - log K``
      (importance sampling: :math:`\hat Z` is unbiased, so by Jensen :math:`\log \hat Z` and
      the loss are biased low).
    - ``log_partition``, a precomputed or estimated :math:`\log Z_\beta` (shape ``S`` or
      scalar), e.g. ``Quadratic.log_partition(beta)`` or the value of a partition estimate.

    The gradient pushes down on the correct answer and up on every answer in proportion to
    its probability. LeCun et al. (2006, eq. 23) write the loss divided by :math:`\beta`,
    :math:`E_C + \frac1\beta \log Z_\beta`; ``nll(...) / beta`` is that form, and it tends to
    :func:`perceptron` as :math:`\beta \to \infty`. Margin: :math:`> 0` (Table 1).

    Args:
        e_pos: energies of the correct answers, shape ``S`` (usually ``(B,)``).
        e_all: energies of the answers to normalise over, shape ``S + (K,)``, or ``None``.
        beta: inverse temperature :math:`\beta > 0`, finite.
        log_weights: log quadrature / importance weights, a number or a tensor broadcasting
            to ``e_all``'s shape; only with ``e_all``.
        log_partition: :math:`\log Z_\beta`, a number or a tensor of shape ``S`` or ``()``;
            only without ``e_all``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``S``).

    Returns:
        The reduced loss or the per-example losses, in nats.

    Raises:
        TypeError: if an input has the wrong type or dtype.
        ValueError: if not exactly one of ``e_all`` and ``log_partition`` is given, shapes do
            not match, ``beta`` is not a finite positive number or ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (23) and Table 1;
        Bahl, Brown, de Souza, Mercer, "Maximum mutual information estimation of hidden Markov
        model parameters for speech recognition", 1986.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> e_all = torch.tensor([[0.0, 1.0, 2.0]])
        >>> loss = eb.losses.nll(torch.tensor([0.0]), e_all)
        >>> round(loss.item(), 6) == round(math.log(1 + math.exp(-1) + math.exp(-2)), 6)
        True
    """
    reduction = check_reduction(reduction)
    beta = check_beta(beta)
    if (e_all is None) == (log_partition is None):
        raise ValueError(
            "give exactly one of e_all (energies of the answers) and log_partition; got "
            f"e_all={'None' if e_all is None else 'a tensor'} and "
            f"log_partition={'None' if log_partition is None else 'a value'}"
        )
    if e_all is not None:
        e_pos, e_all = check_set(e_pos, e_all)
        log_w = _log_weights(log_weights, e_all)
        log_z = torch.logsumexp(-beta * e_all + log_w, dim=-1)
        return reduce(beta * e_pos + log_z, reduction)
    if log_weights is not None:
        raise ValueError("log_weights is only used with e_all; got log_weights without e_all")
    e_pos = check_tensor(e_pos, "e_pos")
    if isinstance(log_partition, Tensor):
        if log_partition.dtype != e_pos.dtype:
            raise TypeError(
                f"log_partition has dtype {log_partition.dtype} but e_pos has dtype "
                f"{e_pos.dtype}; expected equal dtypes"
            )
        check_same_device(log_partition, e_pos, "log_partition", "e_pos")
        if log_partition.shape not in (e_pos.shape, ()):
            raise ValueError(
                f"log_partition has shape {tuple(log_partition.shape)}; expected () or the "
                f"shape of e_pos, {tuple(e_pos.shape)}"
            )
    elif isinstance(log_partition, bool) or not isinstance(log_partition, (int, float)):
        raise TypeError(
            f"log_partition must be a number or a tensor; got {type(log_partition).__name__}"
        )
    return reduce(beta * e_pos + log_partition, reduction)


def mee(e_pos: Tensor, e_all: Tensor, *, beta: float = 1.0, reduction: str = "mean") -> Tensor:
    r"""Compute the minimum-empirical-error loss :math:`1 - P_\beta(y \mid x)`.

    :math:`L = 1 - e^{-\beta E_C} / \sum_k e^{-\beta E_k}` over a finite set of K answers
    (which should contain the correct one, so that :math:`0 \le L \le 1`): the expected
    error rate of a classifier that samples its answer from the Gibbs distribution. Bounded
    and robust to outliers, but not convex; its gradient vanishes on confidently wrong
    answers. Computed as ``-expm1(-(beta E_C + logsumexp(-beta E_k)))``. Margin: :math:`> 0`
    (Table 1).

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_all: energies of all K answers, shape ``S + (K,)``.
        beta: inverse temperature :math:`\beta > 0`, finite.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``S``).

    Returns:
        The reduced loss or the per-example losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if shapes do not match, ``beta`` is not a finite positive number or
            ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (27) and Table 1;
        Ljolje, Ephraim, Rabiner, "Estimation of hidden Markov model parameters by minimizing
        empirical error rate", 1990.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.losses.mee(torch.tensor([0.0]), torch.tensor([[0.0, 0.0]])).item()
        0.5
    """
    reduction = check_reduction(reduction)
    beta = check_beta(beta)
    e_pos, e_all = check_set(e_pos, e_all)
    log_p = -beta * e_pos - torch.logsumexp(-beta * e_all, dim=-1)
    return reduce(-torch.expm1(log_p), reduction)


def contrastive_divergence(e_pos: Tensor, e_neg: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""Compute the contrastive-divergence loss :math:`L = E_C - E_I`, averaged.

    With :math:`\bar y` drawn from the model by a few MCMC steps (from the data: CD-k; from a
    replay buffer: persistent CD), the gradient of the mean,
    :math:`\mathbb E_{data}[\nabla_\theta F] - \mathbb E_{model}[\nabla_\theta F]`, estimates
    the gradient of the NLL without computing :math:`Z`. Gradients must not flow through the
    sampler: compute ``e_neg`` on detached samples. It is unbounded below, so pair it with an
    :func:`ebmlab.losses.energy_l2` regulariser. Margin: none.

    Args:
        e_pos: energies of data, shape ``S``.
        e_neg: energies of model samples (detached), shape ``S`` or ``S + (K,)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns the shape of ``e_neg``).

    Returns:
        The reduced loss or the per-pair differences.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match or ``reduction`` is unknown.

    References:
        Hinton, "Training products of experts by minimizing contrastive divergence", 2002;
        Tieleman, "Training restricted Boltzmann machines using approximations to the
        likelihood gradient", 2008 (persistent CD); Du & Mordatch, "Implicit generation and
        generalization in energy-based models", 2019, arXiv:1903.08689.

    Example:
        >>> import torch, ebmlab as eb
        >>> e_pos, e_neg = torch.tensor([1.0, 2.0]), torch.tensor([4.0, 5.0])
        >>> eb.losses.contrastive_divergence(e_pos, e_neg).item()
        -3.0
    """
    reduction = check_reduction(reduction)
    e_pos, e_neg = check_pair(e_pos, e_neg)
    return reduce(e_pos - e_neg, reduction)
