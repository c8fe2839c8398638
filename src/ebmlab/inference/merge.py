"""Merging of end points into distinct minima, lowest energy first."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["merge_minima"]


def merge_minima(
    points: Tensor, energy: Tensor, is_kept: Tensor, tol: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Merge S end points per input into distinct minima.

    Points are visited from the lowest energy up; a point within Euclidean distance ``tol``
    of an already accepted minimum is a duplicate of it, so each minimum keeps its
    lowest-energy representative. Implemented by leader extraction: each round accepts the
    lowest remaining point of every input and removes everything within ``tol`` of it, so
    the cost is K rounds of O(B × S × D) work (K the largest number of distinct minima) and
    the memory O(B × S × D) — never an S × S distance matrix.

    Args:
        points: (B, S, D) flattened end points.
        energy: (B, S) their energies.
        is_kept: (B, S) which points may be merged at all (finite, converged).
        tol: merge distance.

    Returns:
        ``(order, is_minimum, count, energy_sorted)``: ``order`` (B, S) sorts the starts by
        energy; ``is_minimum`` (B, S) marks, in that order, the accepted representatives;
        ``count`` (B,) their number; ``energy_sorted`` (B, S) (``+inf`` where not kept).
    """
    energy = torch.where(is_kept, energy, torch.full_like(energy, float("inf")))
    energy_sorted, order = torch.sort(energy, dim=1, stable=True)
    pts = torch.gather(points, 1, order.unsqueeze(-1).expand_as(points))
    remaining = torch.isfinite(energy_sorted)
    is_minimum = torch.zeros_like(remaining)
    rows = torch.arange(points.shape[0], device=points.device)
    while bool(remaining.any()):
        has_any = remaining.any(1)
        first = remaining.to(torch.uint8).argmax(1)  # the lowest-energy remaining point
        leader = pts[rows, first]  # (B, D)
        is_close = (pts - leader.unsqueeze(1)).norm(dim=-1) <= tol
        is_minimum[rows, first] |= has_any
        remaining &= ~is_close
        remaining[rows, first] = False
    return order, is_minimum, is_minimum.sum(1), energy_sorted
