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
    of an already accepted minimum is a duplicate of it (so each minimum keeps its
    lowest-energy representative). Cost: one (B, S, S) distance matrix and S vector steps.

    Args:
        points: (B, S, D) flattened end points.
        energy: (B, S) their energies.
        is_kept: (B, S) which points may be merged at all (finite, not diverged).
        tol: merge distance.

    Returns:
        ``(order, is_minimum, count, energy_sorted)``: ``order`` (B, S) sorts the starts by
        energy; ``is_minimum`` (B, S) marks, in that order, the accepted representatives;
        ``count`` (B,) their number; ``energy_sorted`` (B, S) (``+inf`` where not kept).
    """
    energy = torch.where(is_kept, energy, torch.full_like(energy, float("inf")))
    energy_sorted, order = torch.sort(energy, dim=1, stable=True)
    pts = torch.gather(points, 1, order.unsqueeze(-1).expand_as(points))
    is_close = torch.cdist(pts, pts) <= tol  # (B, S, S)
    candidate = torch.isfinite(energy_sorted)
    is_minimum = torch.zeros_like(candidate)
    for i in range(points.shape[1]):
        is_dup = (is_close[:, i, :i] & is_minimum[:, :i]).any(-1)
        is_minimum[:, i] = candidate[:, i] & ~is_dup
    return order, is_minimum, is_minimum.sum(1), energy_sorted
