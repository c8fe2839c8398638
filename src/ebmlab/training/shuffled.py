"""``Shuffled`` negatives: another example's answer, a random derangement of the batch."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab.energy import Energy

__all__ = ["Shuffled"]


class Shuffled:
    r"""Mismatched pairs from the batch: the negative of :math:`(x_i, y_i)` is :math:`y_{\pi(i)}`.

    :math:`\pi` is a uniformly random cyclic derangement (no :math:`y_i` is its own negative):
    positions are permuted at random and each takes the ``y`` of the next one. Useful for
    conditional energies, where another input's answer is a natural wrong answer.

    Example:
        >>> import torch, ebmlab as eb
        >>> y = torch.arange(5.0).unsqueeze(-1)
        >>> g = torch.Generator().manual_seed(0)
        >>> neg = eb.training.negatives.Shuffled()(None, y, generator=g)
        >>> bool((neg != y).all()), sorted(neg.flatten().tolist())
        (True, [0.0, 1.0, 2.0, 3.0, 4.0])
    """

    def __repr__(self) -> str:
        return "Shuffled()"

    def __call__(
        self,
        energy: Energy | None,
        y: Tensor,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        b = y.shape[0]
        if b < 2:
            raise ValueError(f"Shuffled negatives need a batch of at least 2; got {b}")
        perm = torch.randperm(b, generator=generator, device=y.device)
        source = torch.empty_like(perm)
        source[perm] = perm.roll(-1)
        return y.detach()[source]
