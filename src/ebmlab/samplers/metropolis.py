"""The Metropolis-Hastings accept step and masked selection between proposal and current state."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab.samplers.state import State

__all__ = ["metropolis_accept", "select", "nan_to_neginf"]


def metropolis_accept(
    log_ratio: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    r"""Accept each proposal with probability :math:`\min(1, e^{\log r})`.

    A NaN log-ratio (a proposal with a non-finite energy) gives probability 0 and is rejected.

    Args:
        log_ratio: the log acceptance ratio per chain ``(chains,)``.
        generator: the random source of the uniforms.

    Returns:
        ``(is_accepted, acceptance_rate)``, both of shape ``(chains,)``.

    Example:
        >>> import torch
        >>> acc, rate = metropolis_accept(torch.tensor([0.0, -float("inf"), float("nan")]), None)
        >>> acc.tolist(), rate.tolist()
        ([True, False, False], [1.0, 0.0, 0.0])
    """
    rate = log_ratio.clamp(max=0.0).exp_().nan_to_num_(nan=0.0)
    u = torch.rand(log_ratio.shape, generator=generator, dtype=rate.dtype, device=rate.device)
    return u < rate, rate


def select(mask: Tensor, new: State, old: State) -> State:
    """Return ``new`` where ``mask`` (chains,) is true and ``old`` elsewhere, field by field."""
    position = new.position
    m = mask.view(mask.shape + (1,) * (position.ndim - 1))
    return State(
        torch.where(m, position, old.position),
        torch.where(mask, new.energy, old.energy),
        torch.where(m, new.grad, old.grad),
    )


def nan_to_neginf(value: Tensor) -> Tensor:
    """Replace NaN by -inf and keep +-inf (``torch.nan_to_num`` would clip the infinities).

    Example:
        >>> import torch
        >>> nan_to_neginf(torch.tensor([float("nan"), float("inf"), 1.0])).tolist()
        [-inf, inf, 1.0]
    """
    return torch.where(torch.isnan(value), torch.full_like(value, -math.inf), value)
