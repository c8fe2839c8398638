r"""Noise-contrastive losses: binary NCE with a known noise density, and InfoNCE (IBC's form)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

from ebmlab._checks import check_beta, check_tensor
from ebmlab.losses._common import check_pair, check_reduction, reduce

__all__ = ["nce", "info_nce"]


def _check_like(value: object, like: Tensor, name: str, like_name: str) -> Tensor:
    value = check_tensor(value, name)
    if value.shape != like.shape:
        raise ValueError(
            f"{name} has shape {tuple(value.shape)}; expected the shape of {like_name}, "
            f"{tuple(like.shape)}"
        )
    check_pair(like, value, like_name, name)  # dtype and device
    return value


def nce(
    e_data: Tensor,
    e_noise: Tensor,
    log_q_data: Tensor,
    log_q_noise: Tensor,
    *,
    reduction: str = "mean",
) -> Tensor:
    r"""Compute the binary noise-contrastive estimation loss with noise densities.

    The model's unnormalised log density is :math:`-F(y)`; a learnable offset in the energy
    plays the role of :math:`\log Z`, which NCE estimates (unlike maximum likelihood it needs
    no partition function). With :math:`\nu` noise samples per data point drawn from
    :math:`q`, the classifier logit is :math:`G(u) = -F(u) - \log q(u) - \log \nu` and the
    per-example loss is

    .. math::
        \ell_i = \operatorname{softplus}(-G(y_i)) + \sum_{k=1}^{\nu}
        \operatorname{softplus}(G(\tilde y_{ik})),

    i.e. the logistic loss of telling data from noise. Its mean is
    :math:`-J(\theta)` of Gutmann & Hyvärinen (2012) (twice :math:`-J_T` of the 2010
    paper, which divides by :math:`2T` for :math:`\nu = 1`). The noise must cover the data
    and have a known density. Margin: none (it is a likelihood loss).

    Args:
        e_data: energies of data, shape ``S``.
        e_noise: energies of noise samples, shape ``S`` (:math:`\nu = 1`) or ``S + (nu,)``.
        log_q_data: :math:`\log q` at the data, shape ``S``.
        log_q_noise: :math:`\log q` at the noise samples, the shape of ``e_noise``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``S``).

    Returns:
        The reduced loss or the per-example losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match or ``reduction`` is unknown.

    References:
        Gutmann & Hyvärinen, "Noise-contrastive estimation: A new estimation principle for
        unnormalized statistical models", AISTATS 2010; Gutmann & Hyvärinen, "Noise-contrastive
        estimation of unnormalized statistical models, with applications to natural image
        statistics", JMLR 2012.

    Example:
        >>> import torch, ebmlab as eb
        >>> zero = torch.zeros(1)
        >>> round(eb.losses.nce(zero, zero, zero, zero).item(), 6)  # 2 log 2
        1.386294
    """
    reduction = check_reduction(reduction)
    check_pair(e_data, e_noise, "e_data", "e_noise")
    is_paired = e_noise.shape == e_data.shape
    log_q_data = _check_like(log_q_data, e_data, "log_q_data", "e_data")
    log_q_noise = _check_like(log_q_noise, e_noise, "log_q_noise", "e_noise")
    log_nu = math.log(1 if is_paired else e_noise.shape[-1])
    g_data = -e_data - log_q_data - log_nu
    noise_term = functional.softplus(-e_noise - log_q_noise - log_nu)
    if not is_paired:
        noise_term = noise_term.sum(-1)
    return reduce(functional.softplus(-g_data) + noise_term, reduction)


def info_nce(
    e_pos: Tensor, e_neg: Tensor, *, beta: float = 1.0, reduction: str = "mean"
) -> Tensor:
    r"""Compute the InfoNCE loss of implicit behavioural cloning: NLL over counter-examples.

    With N counter-examples :math:`\tilde y_j` per positive, the loss is the negative log of
    the softmax probability of the positive among the N + 1 candidates:

    .. math::
        L = -\log \frac{e^{-\beta E_C}}{e^{-\beta E_C} + \sum_{j=1}^N e^{-\beta E_j}}
          = \beta E_C + \operatorname{logsumexp}(-\beta E_C, -\beta E_1, \dots, -\beta E_N).

    It is :func:`ebmlab.losses.nll` over the set {positive} ∪ counter-examples (Florence et al.
    use :math:`\beta = 1`, counter-examples uniform in the action bounds or from Langevin
    MCMC). Margin: :math:`> 0`.

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_neg: energies of counter-examples, shape ``S + (N,)`` (or ``S`` for N = 1).
        beta: inverse temperature :math:`\beta > 0`, finite.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``S``).

    Returns:
        The reduced loss or the per-example losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match, ``beta`` is not a finite positive number or
            ``reduction`` is unknown.

    References:
        Florence et al., "Implicit Behavioral Cloning", CoRL 2021, arXiv:2109.00137;
        van den Oord, Li, Vinyals, "Representation learning with contrastive predictive
        coding", 2018, arXiv:1807.03748.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> loss = eb.losses.info_nce(torch.tensor([0.0]), torch.tensor([[0.0, 0.0, 0.0]]))
        >>> round(loss.item(), 6) == round(math.log(4), 6)
        True
    """
    reduction = check_reduction(reduction)
    beta = check_beta(beta)
    check_pair(e_pos, e_neg)
    if e_neg.shape == e_pos.shape:
        e_neg = e_neg.unsqueeze(-1)
    logits = -beta * torch.cat([e_pos.unsqueeze(-1), e_neg], dim=-1)  # S + (1 + N,)
    return reduce(beta * e_pos + torch.logsumexp(logits, dim=-1), reduction)
