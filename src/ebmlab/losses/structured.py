r"""Structured losses for energies with exact inference over sequences (LeCun et al. 2006, §6).

Each loss takes ``(energy, y, x)`` as :func:`ebmlab.fit` supplies them, with ``energy`` a
linear-chain energy (:class:`ebmlab.energies.Chain`, or anything with ``unary_energies(x)``,
``transitions`` and ``energy_of(unary, y)``) and ``y`` ``(B, L)``
labels. The most offending answer is found exactly by Viterbi, so the losses are exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab._checks import check_beta, check_tensor
from ebmlab.discrete_domain import check_labels
from ebmlab.energies.chain import forward_algorithm, viterbi
from ebmlab.losses._common import check_nonnegative, check_reduction, reduce
from ebmlab.losses.likelihood import nll

__all__ = ["structured_perceptron", "structured_hinge", "crf_nll", "hamming"]


def _check_chain(energy: object) -> None:
    for attr in ("unary_energies", "transitions", "energy_of"):
        if not hasattr(energy, attr):
            raise TypeError(
                "energy must be a linear-chain energy such as eb.energies.Chain (with "
                f"unary_energies, transitions and energy_of); got "
                f"{type(energy).__name__}"
            )


def _unary(energy: object, y: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor]:
    _check_chain(energy)
    check_tensor(y, "y", min_ndim=2)
    labels = check_labels(y, int(energy.transitions.shape[0]), "y")
    u = energy.unary_energies(x)
    if u.ndim != 3 or labels.shape != (u.shape[0], u.shape[1]):
        raise ValueError(
            f"y has shape {tuple(y.shape)}; expected (B, L) = {tuple(u.shape[:2])}, the "
            "shape of the chain's unary energies"
        )
    return u, labels


def hamming(y: Tensor, y_other: Tensor) -> Tensor:
    """Return the number of positions where two label sequences ``(B, L)`` differ, ``(B,)``.

    Example:
        >>> import torch
        >>> hamming(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[0.0, 2.0, 1.0]]))
        tensor([2.])
    """
    return (y.long() != y_other.long()).to(y.dtype if y.is_floating_point() else
                                           torch.get_default_dtype()).sum(-1)


def structured_perceptron(
    energy: object, y: Tensor, x: Tensor | None = None, *, reduction: str = "mean"
) -> Tensor:
    r"""Compute the structured perceptron loss :math:`E(x, y) - \min_{y'} E(x, y')`.

    The minimiser comes from Viterbi (exact); the gradient is that of
    :math:`E(x, y) - E(x, \check y)` (a subgradient where the minimiser is not unique). Zero
    when the correct sequence is the best one; it has no margin (LeCun et al. 2006, Table 1).

    Args:
        energy: a linear-chain energy (:class:`ebmlab.energies.Chain`).
        y: the correct label sequences ``(B, L)``.
        x: the inputs.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> import torch, ebmlab as eb
        >>> chain = eb.energies.Chain(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.zeros(2, 2))
        >>> structured_perceptron(chain, torch.tensor([[1.0, 1.0]])).item()
        1.0
    """
    reduction = check_reduction(reduction)
    u, labels = _unary(energy, y, x)
    best, _ = viterbi(u, energy.transitions, 1)
    e_min = energy.energy_of(u, best[:, 0])
    return reduce(energy.energy_of(u, labels) - e_min, reduction)


def structured_hinge(
    energy: object,
    y: Tensor,
    x: Tensor | None = None,
    *,
    margin: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Compute the margin-rescaled hinge :math:`E(x, y) - \min_{y'}[E(x, y') - m\,\Delta(y, y')]`.

    :math:`\Delta` is the Hamming distance, so the loss is zero only when every other sequence
    has an energy above :math:`E(x, y)` by at least m per wrong label (the structured SVM of
    Taskar et al. 2003 and Tsochantaridis et al. 2005, in the energy form of LeCun et al. 2006,
    §6). The loss-augmented minimisation is exact: Viterbi on the unaries lowered by m
    wherever a label differs from y. Always ≥ 0 (y' = y gives 0).

    Args:
        energy: a linear-chain energy.
        y: correct label sequences ``(B, L)``.
        x: the inputs.
        margin: m ≥ 0 per wrong label.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> import torch, ebmlab as eb
        >>> chain = eb.energies.Chain(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.zeros(2, 2))
        >>> structured_hinge(chain, torch.tensor([[0.0, 1.0]]), margin=2.0).item()
        2.0
    """
    reduction = check_reduction(reduction)
    margin = check_nonnegative(margin, "margin")
    u, labels = _unary(energy, y, x)
    wrong = 1.0 - torch.nn.functional.one_hot(labels, u.shape[-1]).to(u.dtype)  # (B, L, K)
    augmented = u.detach() - margin * wrong
    best, _ = viterbi(augmented, energy.transitions, 1)
    y_hat = best[:, 0]
    offending = energy.energy_of(u, y_hat) - margin * (y_hat != labels).to(u.dtype).sum(-1)
    return reduce((energy.energy_of(u, labels) - offending).clamp_min(0.0), reduction)


def crf_nll(
    energy: object,
    y: Tensor,
    x: Tensor | None = None,
    *,
    beta: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Compute the linear-chain CRF loss :math:`-\log P_\beta(y|x) = \beta E + \log Z_\beta(x)`.

    :math:`\log Z_\beta(x) = \log \sum_{y'} e^{-\beta E(x, y')}` is exact (forward algorithm),
    so this is :func:`ebmlab.losses.nll` with ``log_partition`` given; its gradient pushes
    down on y and up on every sequence in proportion to its probability (the marginals).

    Args:
        energy: a linear-chain energy.
        y: correct label sequences ``(B, L)``.
        x: the inputs.
        beta: inverse temperature.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    References:
        Lafferty, McCallum and Pereira, ICML 2001; LeCun et al. 2006, §6.

    Example:
        >>> import torch, ebmlab as eb
        >>> chain = eb.energies.Chain(torch.zeros(3, 2), torch.zeros(2, 2))
        >>> round(crf_nll(chain, torch.zeros(1, 3)).item(), 4)  # log 2^3
        2.0794
    """
    reduction = check_reduction(reduction)
    beta = check_beta(beta)
    u, labels = _unary(energy, y, x)
    e_pos = energy.energy_of(u, labels)
    # One unary evaluation serves both terms.
    log_z = torch.logsumexp(forward_algorithm(u, energy.transitions, beta)[:, -1], -1)
    return nll(e_pos, beta=beta, log_partition=log_z, reduction=reduction)
