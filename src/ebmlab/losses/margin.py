r"""Energy, perceptron and generalised-margin losses (LeCun et al. 2006, Table 1).

Notation: :math:`E_C = F(x, y)` is the energy of the correct answer (``e_pos``) and
:math:`E_I = F(x, \bar y)` that of an incorrect, ideally the most offending, answer
(``e_neg``). ``e_neg`` has the shape of ``e_pos`` or that shape plus a trailing ``K`` (K
negatives per positive, each forming a pair with its positive); ``reduction="none"`` returns
one loss per pair.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional

from ebmlab._checks import check_positive, check_tensor
from ebmlab.losses._common import (
    check_nonnegative,
    check_pair,
    check_reduction,
    check_set,
    reduce,
)

__all__ = [
    "energy_loss",
    "perceptron",
    "hinge",
    "log_loss",
    "lvq2",
    "mce",
    "square_square",
    "square_exp",
]


def energy_loss(e_pos: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""Compute the energy loss :math:`L = E_C`: push down on the correct answer only.

    It has no contrastive term, so it only works when the architecture keeps the volume of low
    energy limited (e.g. a latent-variable model with a small latent set, or a
    reconstruction energy); otherwise it collapses to a flat energy. Margin: none.

    Args:
        e_pos: energies of the correct answers, any shape ``S`` (usually ``(B,)``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``S``).

    Returns:
        The reduced loss (a scalar tensor) or the per-example losses.

    Raises:
        TypeError: if ``e_pos`` is not a floating tensor.
        ValueError: if ``reduction`` is unknown.

    References:
        LeCun, Chopra, Hadsell, Ranzato, Huang, "A Tutorial on Energy-Based Learning", 2006,
        eq. (6) and Table 1.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.losses.energy_loss(torch.tensor([1.0, 3.0])).item()
        2.0
    """
    reduction = check_reduction(reduction)
    return reduce(check_tensor(e_pos, "e_pos"), reduction)


def perceptron(e_pos: Tensor, e_min: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""Compute the generalised perceptron loss :math:`L = E_C - \min_y F(x, y)`.

    ``e_min`` is the energy of the answer found by inference (which may be the correct one,
    making the loss 0), or the energies of a set of answers ``(S, K)`` whose minimum is taken.
    The loss is :math:`\ge 0` when the minimum is over a set containing the correct answer. It
    creates no energy gap between correct and incorrect answers. Margin: 0. It is the
    :math:`\beta \to \infty` limit of :func:`ebmlab.losses.nll` divided by :math:`\beta`.

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_min: the minimum energies over the answers, shape ``S``, or energies of K answers,
            shape ``S + (K,)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns shape ``S``).

    Returns:
        The reduced loss or the per-example losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match or ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (7) and Table 1.

    Example:
        >>> import torch, ebmlab as eb
        >>> e_all = torch.tensor([[2.0, 0.5, 3.0]])
        >>> eb.losses.perceptron(torch.tensor([2.0]), e_all).item()
        1.5
    """
    reduction = check_reduction(reduction)
    e_pos = check_tensor(e_pos, "e_pos")
    e_min = check_tensor(e_min, "e_min")
    if e_min.shape != e_pos.shape:
        e_pos, e_min = check_set(e_pos, e_min, all_name="e_min")
        e_min = e_min.amin(-1)
    else:
        e_pos, e_min = check_pair(e_pos, e_min, neg_name="e_min")
    return reduce(e_pos - e_min, reduction)


def hinge(e_pos: Tensor, e_neg: Tensor, margin: float = 1.0, *, reduction: str = "mean") -> Tensor:
    r"""Compute the hinge loss :math:`L = \max(0, m + E_C - E_I)`.

    It is exactly 0 once the incorrect answer's energy exceeds the correct one's by at least the
    margin :math:`m`, and linear in the energy difference otherwise. Margin: :math:`m`.

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_neg: energies of incorrect answers, shape ``S`` or ``S + (K,)``.
        margin: :math:`m \ge 0`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns the shape of ``e_neg``).

    Returns:
        The reduced loss or the per-pair losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match, ``margin < 0`` or ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (11) and Table 1.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.losses.hinge(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 2.0]), 1.0).item()
        0.25
    """
    reduction = check_reduction(reduction)
    margin = check_nonnegative(margin, "margin")
    e_pos, e_neg = check_pair(e_pos, e_neg)
    return reduce(torch.relu(margin + e_pos - e_neg), reduction)


def log_loss(e_pos: Tensor, e_neg: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""Compute the log loss :math:`L = \log(1 + e^{E_C - E_I})`, a soft hinge.

    Computed as ``softplus(E_C - E_I)``, which is stable for any energy gap. It never reaches
    zero but keeps pushing, ever more weakly, on the energy difference. Margin: infinite
    (:math:`> 0` in Table 1).

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_neg: energies of incorrect answers, shape ``S`` or ``S + (K,)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns the shape of ``e_neg``).

    Returns:
        The reduced loss or the per-pair losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match or ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (12) and Table 1.

    Example:
        >>> import torch, ebmlab as eb
        >>> round(eb.losses.log_loss(torch.tensor([1.0]), torch.tensor([1.0])).item(), 6)
        0.693147
    """
    reduction = check_reduction(reduction)
    e_pos, e_neg = check_pair(e_pos, e_neg)
    return reduce(functional.softplus(e_pos - e_neg), reduction)


def lvq2(
    e_pos: Tensor,
    e_neg: Tensor,
    saturation: float = 1.0,
    *,
    delta: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Compute the LVQ2 loss, a zero-margin hinge that saturates to limit the effect of outliers.

    Two forms, both from LeCun et al. (2006):

    - ``delta=None`` (Table 1): :math:`L = \min(M, \max(0, E_C - E_I))` with
      :math:`M` = ``saturation``.
    - ``delta`` given (eq. 13, Kohonen's rule for positive distance-like energies):
      :math:`L = \min(1, \max(0, \frac{E_C - E_I}{\delta E_I}))`; the ratio
      :math:`E_C / E_I` saturates at :math:`1 + \delta`, so ``saturation`` must be left at 1.
      It needs :math:`E_I > 0` (checked, one device synchronisation per call: with
      :math:`E_I \le 0` the ratio's sign flips and a winning wrong answer would cost 0).

    The loss is 0 as soon as :math:`E_C \le E_I` and constant (zero gradient) beyond the
    saturation, so misclassified outliers cost a nominal amount. Margin: 0.

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_neg: energies of incorrect answers, shape ``S`` or ``S + (K,)``.
        saturation: :math:`M > 0` (Table 1 form).
        delta: :math:`\delta > 0` for the relative form of eq. (13), or ``None``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns the shape of ``e_neg``).

    Returns:
        The reduced loss or the per-pair losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match, ``saturation`` or ``delta`` is not positive,
            ``saturation`` is not 1 together with ``delta``, ``e_neg`` is not positive with
            ``delta``, or ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (13) and Table 1;
        Kohonen, "Self-Organization and Associative Memory", 1989.

    Example:
        >>> import torch, ebmlab as eb
        >>> e_pos, e_neg = torch.tensor([3.0, 1.0, 0.0]), torch.tensor([1.0, 0.5, 1.0])
        >>> eb.losses.lvq2(e_pos, e_neg, 1.0, reduction="none").tolist()
        [1.0, 0.5, 0.0]
        >>> eb.losses.lvq2(e_pos, e_neg, delta=4.0, reduction="none").tolist()
        [0.5, 0.25, 0.0]
    """
    reduction = check_reduction(reduction)
    saturation = check_positive(saturation, "saturation")
    e_pos, e_neg = check_pair(e_pos, e_neg)
    if delta is None:
        return reduce((e_pos - e_neg).clamp(min=0.0, max=saturation), reduction)
    delta = check_positive(delta, "delta")
    if saturation != 1.0:
        raise ValueError(
            f"saturation must be 1 when delta is given (eq. 13 saturates the ratio at 1 + delta); "
            f"got saturation={saturation}"
        )
    if not bool((e_neg.detach() > 0).all()):
        raise ValueError(
            "lvq2(delta=...) needs positive energies e_neg (eq. 13 is for distance-like "
            f"energies); got a minimum of {float(e_neg.detach().min())}. Use delta=None (the "
            "Table 1 form) for energies of any sign"
        )
    return reduce(((e_pos - e_neg) / (delta * e_neg)).clamp(min=0.0, max=1.0), reduction)


def mce(e_pos: Tensor, e_neg: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""Compute the minimum-classification-error loss :math:`L = \sigma(E_C - E_I)`.

    :math:`\sigma(u) = (1 + e^{-u})^{-1}` is the logistic function: a smooth count of errors,
    bounded in (0, 1), that ignores answers far on either side of the decision boundary.
    Margin: :math:`> 0` (Table 1), but the gradient vanishes for large positive gaps too, so it
    is not a good loss from scratch.

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_neg: energies of incorrect answers, shape ``S`` or ``S + (K,)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns the shape of ``e_neg``).

    Returns:
        The reduced loss or the per-pair losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match or ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (15) and Table 1;
        Juang, Chou, Lee, "Minimum classification error rate methods for speech recognition",
        1997.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.losses.mce(torch.tensor([2.0]), torch.tensor([2.0])).item()
        0.5
    """
    reduction = check_reduction(reduction)
    e_pos, e_neg = check_pair(e_pos, e_neg)
    return reduce(torch.sigmoid(e_pos - e_neg), reduction)


def square_square(
    e_pos: Tensor, e_neg: Tensor, margin: float = 1.0, *, reduction: str = "mean"
) -> Tensor:
    r"""Compute the square-square loss :math:`L = E_C^2 + \max(0, m - E_I)^2`.

    For non-negative energies: pulls the correct energy to 0 and pushes incorrect energies
    above the margin :math:`m`; the contrastive term is exactly 0 once :math:`E_I \ge m`.
    Table 1 of the tutorial prints a minus sign; eq. (16) of the text has the plus used here
    (with a minus the loss would reward low incorrect energies). Margin: :math:`m`.

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_neg: energies of incorrect answers, shape ``S`` or ``S + (K,)``.
        margin: :math:`m \ge 0`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns the shape of ``e_neg``).

    Returns:
        The reduced loss or the per-pair losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match, ``margin < 0`` or ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (16) and Table 1;
        Hadsell, Chopra, LeCun, "Dimensionality reduction by learning an invariant mapping",
        2006.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.losses.square_square(torch.tensor([1.0]), torch.tensor([0.5]), 2.0).item()
        3.25
    """
    reduction = check_reduction(reduction)
    margin = check_nonnegative(margin, "margin")
    e_pos, e_neg = check_pair(e_pos, e_neg)
    return reduce(e_pos.square() + torch.relu(margin - e_neg).square(), reduction)


def square_exp(
    e_pos: Tensor, e_neg: Tensor, gamma: float = 1.0, *, reduction: str = "mean"
) -> Tensor:
    r"""Compute the square-exponential loss :math:`L = E_C^2 + \gamma e^{-E_I}`.

    Like :func:`square_square`, but the push on incorrect answers decays exponentially instead
    of stopping at a margin. Table 1 names the constant :math:`\beta`; here it is
    :math:`\gamma` because ``beta`` is the inverse temperature everywhere in ebmlab.
    Margin: :math:`> 0` (Table 1).

    Args:
        e_pos: energies of the correct answers, shape ``S``.
        e_neg: energies of incorrect answers, shape ``S`` or ``S + (K,)``.
        gamma: :math:`\gamma > 0`, the weight of the contrastive term.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (returns the shape of ``e_neg``).

    Returns:
        The reduced loss or the per-pair losses.

    Raises:
        TypeError: if an input is not a floating tensor or the dtypes differ.
        ValueError: if the shapes do not match, ``gamma <= 0`` or ``reduction`` is unknown.

    References:
        LeCun et al., "A Tutorial on Energy-Based Learning", 2006, eq. (17) and Table 1;
        Osadchy, Miller, LeCun, "Synergistic face detection and pose estimation with
        energy-based models", 2005.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.losses.square_exp(torch.tensor([1.0]), torch.tensor([0.0]), 2.0).item()
        3.0
    """
    reduction = check_reduction(reduction)
    gamma = check_positive(gamma, "gamma")
    e_pos, e_neg = check_pair(e_pos, e_neg)
    return reduce(e_pos.square() + gamma * torch.exp(-e_neg), reduction)
