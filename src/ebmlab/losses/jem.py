r"""The JEM hybrid objective: cross-entropy on p(y|x) plus maximum likelihood on p(x)."""

from __future__ import annotations

from torch import Tensor

from ebmlab.losses._common import check_nonnegative, check_pair, check_reduction, reduce

__all__ = ["jem"]


def jem(
    e_pos: Tensor,
    e_neg: Tensor,
    f_pos: Tensor | None = None,
    *,
    generative_weight: float = 1.0,
    alpha: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Compute JEM's hybrid loss from the joint energy of the data and the marginal of samples.

    With a classifier read as an EBM, :math:`E(x, y) = -\mathrm{logits}_y(x)` and
    :math:`F(x) = -\operatorname{logsumexp}_y \mathrm{logits}_y(x)`, the negative log-likelihood
    of the joint splits into the two terms JEM trains,

    .. math::
        -\log p(x, y) = \underbrace{E(x, y) - F(x)}_{\text{cross-entropy}}
        + \underbrace{F(x) + \log Z}_{-\log p(x)},

    and the gradient of :math:`\log Z` is :math:`-\mathbb E_{p(x')}[\nabla F(x')]`, estimated by
    the energies of Langevin samples :math:`x'` of :math:`p(x) \propto e^{-F(x)}`. So
    ``e_pos`` :math:`= E(x, y)` on the data and ``e_neg`` :math:`= F(x')` on the samples give

    .. math::
        L = \underbrace{E(x, y) - F(x)}_{CE} + w\,\underbrace{(F(x) - F(x'))}_{ML}
        + \alpha\,(F(x)^2 + F(x')^2).

    With :math:`w = 1` and :math:`\alpha = 0` the marginal of the data cancels and
    :math:`L = E(x, y) - F(x')` (``f_pos`` is not needed); otherwise pass ``f_pos``
    :math:`= F(x)`. Gradients must not flow through the sampler: compute ``e_neg`` on detached
    samples. ``eb.training.images.fit_jem`` runs it through ``eb.fit`` (the energies come from
    ``clf.marginal()``, labels as conditioning, marginal negatives).

    Args:
        e_pos: joint energies of the data :math:`E(x_i, y_i)`, shape ``S``.
        e_neg: marginal energies of model samples :math:`F(x'_i)`, shape ``S`` or ``S + (K,)``.
        f_pos: marginal energies of the data :math:`F(x_i)`, shape ``S`` (needed unless
            ``generative_weight == 1`` and ``alpha == 0``).
        generative_weight: the weight :math:`w` of the maximum-likelihood term.
        alpha: weight of the energy-magnitude penalty (Du & Mordatch's regulariser).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        The reduced loss or the per-example losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if shapes do not match, a weight is negative, or ``f_pos`` is missing.

    References:
        Grathwohl, Wang, Jacobsen, Duvenaud, Norouzi & Swersky, "Your Classifier is Secretly an
        Energy Based Model and You Should Treat it Like One", ICLR 2020, arXiv:1912.03263.
        Du & Mordatch, "Implicit Generation and Generalization in Energy-Based Models",
        NeurIPS 2019, arXiv:1903.08689.

    Example:
        >>> import torch
        >>> from ebmlab.losses.jem import jem
        >>> e_pos, e_neg = torch.tensor([-3.0, -2.0]), torch.tensor([-1.0, -1.5])
        >>> jem(e_pos, e_neg)  # mean(E(x, y) - F(x'))
        tensor(-1.2500)
        >>> f_pos = torch.tensor([-3.5, -2.5])  # CE = 0.5 each, ML = mean(f_pos - e_neg) = -1.75
        >>> jem(e_pos, e_neg, f_pos, generative_weight=0.5)
        tensor(-0.3750)
    """
    reduction = check_reduction(reduction)
    shape = e_pos.shape if isinstance(e_pos, Tensor) else None
    e_pos, e_neg = check_pair(e_pos, e_neg)
    generative_weight = check_nonnegative(generative_weight, "generative_weight")
    alpha = check_nonnegative(alpha, "alpha")
    if e_pos.shape != shape:  # K samples per example: S + (K,) -> S, their mean
        e_pos, e_neg = e_pos.squeeze(-1), e_neg.mean(-1)
    if generative_weight == 1.0 and alpha == 0.0:
        return reduce(e_pos - e_neg, reduction)
    if f_pos is None:
        raise ValueError(
            "f_pos (the marginal energies F(x) of the data) is needed when generative_weight "
            f"!= 1 or alpha > 0; got generative_weight={generative_weight}, alpha={alpha}"
        )
    e_pos, f_pos = check_pair(e_pos, f_pos, "e_pos", "f_pos")
    loss = e_pos - f_pos + generative_weight * (f_pos - e_neg)
    if alpha:
        loss = loss + alpha * (f_pos.square() + e_neg.square())
    return reduce(loss, reduction)
