"""Merging of end points into distinct minima, lowest energy first."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["merge_minima"]


def merge_minima(
    points: Tensor,
    energy: Tensor,
    is_kept: Tensor,
    tol: float,
    *,
    max_rounds: int = 64,
    block_elements: int = 2**22,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Merge S end points per input into distinct minima.

    Points are visited from the lowest energy up; a point within Euclidean distance ``tol``
    of an already accepted minimum is a duplicate of it, so each minimum keeps its
    lowest-energy representative. Two exact algorithms compute this greedy rule:

    - leader extraction (the common case, few distinct minima): each round accepts the lowest
      remaining point of every input and removes everything within ``tol`` of it; K rounds of
      O(B × S × D) work for K distinct minima;
    - after ``max_rounds`` rounds (many distinct end points), a fixed-point iteration on the
      remaining points, ``accepted_i = ¬∃ j < i: close(i, j) ∧ accepted_j``, evaluated in row
      blocks of at most ``block_elements`` distances; it converges after as many sweeps as the
      longest chain of mutually close points.

    Memory is O(B × S × D + block_elements), never a full S × S matrix.

    Args:
        points: (B, S, D) flattened end points.
        energy: (B, S) their energies.
        is_kept: (B, S) which points may be merged at all (finite, converged).
        tol: merge distance.
        max_rounds: leader-extraction rounds before switching to the blocked iteration.
        block_elements: size bound of one block of the distance computation.

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
    for _ in range(max_rounds):
        has_any = remaining.any(1)
        if not bool(has_any.any()):
            break
        first = remaining.to(torch.uint8).argmax(1)  # the lowest-energy remaining point
        leader = pts[rows, first]  # (B, D)
        is_close = (pts - leader.unsqueeze(1)).norm(dim=-1) <= tol
        is_minimum[rows, first] |= has_any
        remaining &= ~is_close
        remaining[rows, first] = False
    else:
        if bool(remaining.any()):
            is_minimum |= _fixed_point(pts, remaining, tol, block_elements)
    return order, is_minimum, is_minimum.sum(1), energy_sorted


def _fixed_point(pts: Tensor, candidate: Tensor, tol: float, block_elements: int) -> Tensor:
    """Greedy acceptance among ``candidate`` points (already in energy order), blockwise."""
    b, s, _ = pts.shape
    rows_per_block = max(1, block_elements // max(1, b * s))
    lower = torch.ones(s, s, dtype=torch.bool, device=pts.device).tril(-1)
    accepted = candidate.clone()
    while True:
        blocked = torch.zeros_like(candidate)
        for i0 in range(0, s, rows_per_block):
            i1 = min(s, i0 + rows_per_block)
            # (B, rows, S): is point j < i accepted and within tol of point i?
            close = torch.cdist(pts[:, i0:i1], pts) <= tol
            close &= lower[i0:i1] & accepted.unsqueeze(1)
            blocked[:, i0:i1] = close.any(-1)
        new = candidate & ~blocked
        if torch.equal(new, accepted):
            return accepted
        accepted = new
