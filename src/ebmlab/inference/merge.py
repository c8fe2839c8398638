"""Merging of end points into distinct minima, by basin, lowest energy first, in linear memory."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Merged", "SameBasin", "merge_minima", "segment_test"]

# same_basin(a, b, energy_a, energy_b, rows) -> (P,) bool: no energy barrier between the P pairs
# of points a[p], b[p] (flattened, (P, D)) of inputs rows[p].
SameBasin = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


class Merged(NamedTuple):
    """The merge of S end points per input (see :func:`merge_minima`).

    Attributes:
        order: (B, S) sorts the starts by energy (not kept last).
        is_minimum: (B, S) marks, in that order, the accepted representatives.
        count: (B,) their number.
        energy_sorted: (B, S) energies in that order (``+inf`` where not kept).
        label: (B, S) for each position in that order, the position of its representative
            (``-1`` where not kept).
    """

    order: Tensor
    is_minimum: Tensor
    count: Tensor
    energy_sorted: Tensor
    label: Tensor


def segment_test(
    energy_fn: Callable[[Tensor, Tensor], Tensor],
    tolerance: Tensor,
    num_points: int = 5,
) -> SameBasin:
    """Return a :data:`SameBasin` test that samples F on the segment between two points.

    Two points a, b of input r are in one basin when F at the ``num_points`` interior points
    ``a + t (b - a)``, ``t = 1/(n+1) … n/(n+1)``, never exceeds ``max(F(a), F(b)) +
    tolerance[r]``: a convex (flat, anisotropic) bottom always passes, a barrier between two
    wells does not.

    Args:
        energy_fn: ``energy_fn(points (P, D), rows (P,)) -> (P,)`` energies.
        tolerance: (B,) energy tolerance per input.
        num_points: interior points per segment.
    """

    def test(a: Tensor, b: Tensor, ea: Tensor, eb: Tensor, rows: Tensor) -> Tensor:
        p = a.shape[0]
        t = torch.arange(1, num_points + 1, dtype=a.dtype, device=a.device) / (num_points + 1)
        pts = a.unsqueeze(1) + t.view(1, -1, 1) * (b - a).unsqueeze(1)  # (P, n, D)
        e = energy_fn(pts.reshape(p * num_points, -1), rows.repeat_interleave(num_points))
        top = e.reshape(p, num_points).amax(1)
        return top <= torch.maximum(ea, eb) + tolerance[rows]

    return test


def merge_minima(
    points: Tensor,
    energy: Tensor,
    is_kept: Tensor,
    tol: float,
    *,
    same_basin: SameBasin | None = None,
    radius: float | None = None,
    near: int = 2,
    block_elements: int = 2**22,
) -> Merged:
    """Merge S end points per input into distinct minima, by basin.

    Points are visited from the lowest energy up. Without ``same_basin`` a point within
    Euclidean distance ``tol`` of an accepted representative joins the nearest such one;
    otherwise it becomes a new representative (so each minimum keeps its lowest-energy
    point). With ``same_basin`` the rule is by basin: a point joins one of its ``near``
    nearest representatives within ``radius`` (default ``10 * tol``) when ``same_basin``
    finds no energy barrier between them, and becomes a new representative otherwise, even
    when it is closer than ``tol`` to one of them.

    The sorted points are processed in blocks: each block is compared with the
    representatives found so far (a (B, block, K) distance table), and the new
    representatives inside a block are resolved by a fixed-point iteration on the ``near``
    nearest lower points of each point. Memory is O(B × S × D + block_elements): never an
    S × S matrix.

    Args:
        points: (B, S, D) flattened end points.
        energy: (B, S) their energies.
        is_kept: (B, S) which points may be merged at all (finite, converged).
        tol: merge distance.
        same_basin: the barrier test (e.g. :func:`segment_test`); ``None`` merges by distance.
        radius: largest distance tested for one basin, with ``same_basin``.
        near: candidate representatives tested per point.
        block_elements: size bound of one block's distance table.

    Returns:
        A :class:`Merged`.
    """
    b, s, d = points.shape
    dev = points.device
    radius = (10.0 * tol if radius is None else float(radius)) if same_basin else tol
    energy = torch.where(is_kept, energy, torch.full_like(energy, float("inf")))
    energy_sorted, order = torch.sort(energy, dim=1, stable=True)
    pts = torch.gather(points, 1, order.unsqueeze(-1).expand_as(points))
    remaining = torch.isfinite(energy_sorted)
    is_minimum = torch.zeros_like(remaining)
    label = torch.full((b, s), -1, dtype=torch.long, device=dev)
    lead_pts = pts.new_zeros(b, 0, d)
    lead_pos = torch.zeros(b, 0, dtype=torch.long, device=dev)
    lead_ok = torch.zeros(b, 0, dtype=torch.bool, device=dev)
    n_used = int(remaining.sum(1).max()) if s else 0
    # A fixed random axis: two points within ``radius`` project within ``radius`` on it, so
    # only the representatives in that window of the sorted projections are compared.
    gen = torch.Generator(device=dev).manual_seed(0)
    axis = torch.randn(d, generator=gen, dtype=points.dtype, device=dev)
    axis = axis / axis.norm().clamp_min(torch.finfo(points.dtype).tiny)
    # Up to 3 orthonormal axes for a grid of cells of side ``radius`` on the projections:
    # two points within ``radius`` lie in neighbouring cells, so when every representative
    # is its own minimum (a window holding a fixed share of a growing table) only the 3^k
    # neighbouring cells are compared.
    cells = _CellIndex.build(pts, remaining, radius)
    i0 = 0
    while i0 < n_used:
        k = min(lead_pts.shape[1], 4096)
        nb = block_elements // max(1, b * max(k, near, 1))
        nb = max(8, min(512, nb, math.isqrt(max(1, block_elements // max(1, b)))))
        i1 = min(n_used, i0 + nb)
        blk, blk_e = pts[:, i0:i1], energy_sorted[:, i0:i1]
        rem = remaining[:, i0:i1]
        pos = torch.arange(i0, i1, device=dev).expand(b, -1)
        joined = torch.full((b, i1 - i0), -1, dtype=torch.long, device=dev)
        if k:
            kk = min(near, k) if same_basin else 1
            dn, jl = _nearest_leaders(blk, lead_pts, lead_ok, radius, kk, axis, cells)
            cand = (dn <= radius) & rem.unsqueeze(-1)
            lpos = torch.gather(lead_pos, 1, jl.flatten(1)).reshape(jl.shape)
            joined = _first_passing(cand, blk, blk_e, lpos, pts, energy_sorted, same_basin)
        new = rem & (joined < 0)
        label[:, i0:i1] = torch.where(joined >= 0, joined, label[:, i0:i1])
        if bool(new.any()):
            acc, lab = _resolve_block(blk, blk_e, new, pos, radius, near, same_basin)
            label[:, i0:i1] = torch.where(new, lab, label[:, i0:i1])
            is_minimum[:, i0:i1] = acc
            # Append the block's representatives (padded per input) to the table.
            m = int(acc.sum(1).max())
            rank = torch.sort((~acc).to(torch.int8), dim=1, stable=True).indices[:, :m]
            ok = torch.gather(acc, 1, rank)
            lead_pts = torch.cat([lead_pts, torch.gather(blk, 1, rank.unsqueeze(-1).expand(
                -1, -1, d))], 1)
            lead_pos = torch.cat([lead_pos, torch.gather(pos, 1, rank)], 1)
            lead_ok = torch.cat([lead_ok, ok], 1)
            if cells is not None:
                cells.append(lead_pts[:, -m:], ok)
            if lead_ok.shape[1] > 2 * max(1, int(lead_ok.sum(1).max())):
                lead_pts, lead_pos, lead_ok = _compact(lead_pts, lead_pos, lead_ok)
                if cells is not None:
                    cells.rebuild(lead_pts, lead_ok)
        i0 = i1
    return Merged(order, is_minimum, is_minimum.sum(1), energy_sorted, label)


def _nearest_leaders(
    blk: Tensor,
    lead_pts: Tensor,
    lead_ok: Tensor,
    radius: float,
    kk: int,
    axis: Tensor,
    cells: _CellIndex | None = None,
) -> tuple[Tensor, Tensor]:
    """Distances (B, nb, kk) to the kk nearest representatives and their indices (B, nb, kk).

    Representatives are compared only inside the window of ``axis`` projections within
    ``radius`` of each point (exact: farther ones are farther than ``radius``), or, when
    fewer, inside the neighbouring grid cells of ``cells`` (:class:`_CellIndex`, exact
    too); when the window is most of the table the whole table is compared. Every
    path returns the same representatives within ``radius`` (the only ones used).
    """
    b, nb, d = blk.shape
    k = lead_pts.shape[1]
    inf = torch.tensor(math.inf, dtype=blk.dtype, device=blk.device)
    grid = cells.candidates(blk, k // 2) if (cells is not None and k > 64) else None
    if grid is not None:
        j, inside = grid
        w = j.shape[2]
    else:
        lp = torch.where(lead_ok, lead_pts @ axis, inf)  # (B, K)
        sp, si = torch.sort(lp, dim=1)
        bp = (blk @ axis).contiguous()  # (B, nb)
        lo = torch.searchsorted(sp, bp - radius)
        hi = torch.searchsorted(sp, bp + radius, right=True)
        w = int((hi - lo).max()) if nb else 0
        if 2 * w >= k:
            dist = torch.cdist(blk, lead_pts)  # (B, nb, K)
            dist = torch.where(lead_ok.unsqueeze(1), dist, inf)
            kk = min(kk, k)
            dn, jn = torch.topk(dist, kk, dim=2, largest=False)
            return dn, jn
        w = max(w, 1)
        slot = lo.unsqueeze(-1) + torch.arange(w, device=blk.device)  # (B, nb, W)
        inside = slot < hi.unsqueeze(-1)
        slot = slot.clamp_max(k - 1)
        j = torch.gather(si, 1, slot.flatten(1)).reshape(b, nb, w)
    cand = torch.gather(lead_pts, 1, j.flatten(1).unsqueeze(-1).expand(-1, -1, d))
    dist = (cand.reshape(b, nb, w, d) - blk.unsqueeze(2)).norm(dim=-1)
    dist = torch.where(inside, dist, inf)
    kk = min(kk, w)
    dn, pick = torch.topk(dist, kk, dim=2, largest=False)
    return dn, torch.gather(j, 2, pick)


class _CellIndex:
    """The representatives sorted by grid cell, kept sorted as they are appended.

    The cells have side ``radius`` on k <= 3 fixed orthonormal projections, so a point within
    ``radius`` of another projects within ``radius`` on each axis and lies in one of its 3^k
    neighbouring cells. Cells are numbered in a mixed radix fixed from all the points, so the
    numbers of the representatives stay valid as the table grows: each block's new ones are
    merged into the sorted numbers (O(K) per block, no re-sort), and each neighbouring cell
    of a point is one ``searchsorted`` range.
    """

    def __init__(self, axes: Tensor, base: Tensor, strides: Tensor, top: Tensor,
                 radius: float, b: int) -> None:
        self.axes, self.base, self.strides, self.top, self.radius = axes, base, strides, top, radius
        dev = axes.device
        self.keys = torch.zeros(b, 0, dtype=torch.long, device=dev)  # sorted cell numbers
        self.index = torch.zeros(b, 0, dtype=torch.long, device=dev)  # their table rows
        k = axes.shape[1]
        offs = torch.cartesian_prod(*[torch.arange(-1, 2, device=dev)] * k).reshape(-1, k)
        self.neighbours = (offs * strides).sum(-1)  # (3^k,)

    @staticmethod
    def build(pts: Tensor, remaining: Tensor, radius: float) -> _CellIndex | None:
        """The index for the (B, S, D) points, or ``None`` (no finite point, or too many cells)."""
        b, _, d = pts.shape
        if d < 2 or not bool(remaining.any()) or not radius > 0:  # 1-D: the window is exact
            return None
        gen = torch.Generator(device=pts.device).manual_seed(1)
        axes = torch.linalg.qr(torch.randn(d, min(d, 3), generator=gen, dtype=pts.dtype,
                                           device=pts.device))[0]
        c = torch.floor(pts[remaining] @ axes / radius)  # (P, k)
        if not bool(torch.isfinite(c).all()):
            return None
        lo, hi = c.amin(0), c.amax(0)
        extent = (hi - lo + 3).tolist()  # a spare cell on each side for the neighbours
        if math.prod(extent) >= 2**60:
            return None
        stride = [1] * len(extent)
        for i in range(len(extent) - 2, -1, -1):
            stride[i] = stride[i + 1] * int(extent[i + 1])
        strides = torch.tensor(stride, dtype=torch.long, device=pts.device)
        return _CellIndex(axes, lo - 1, strides, hi + 1, radius, b)

    def cell(self, pts: Tensor) -> Tensor:
        """(B, n) cell numbers of (B, n, D) points (out-of-range ones clamped to the rim)."""
        c = torch.floor(pts @ self.axes / self.radius)
        c = torch.nan_to_num(c, nan=0.0).clamp(self.base, self.top)
        return ((c - self.base).to(torch.long) * self.strides).sum(-1)

    def append(self, new_pts: Tensor, ok: Tensor) -> None:
        """Add the (B, m) newest table rows (the last m, ``ok`` marking the real ones)."""
        k0, m = self.keys.shape[1], new_pts.shape[1]
        key = torch.where(ok, self.cell(new_pts), torch.full_like(ok, 2**62, dtype=torch.long))
        nk, no = torch.sort(key, dim=1)
        total = k0 + m
        old_at = torch.arange(k0, device=key.device) + torch.searchsorted(nk, self.keys)
        new_at = torch.arange(m, device=key.device) + torch.searchsorted(self.keys, nk,
                                                                         right=True)
        keys = key.new_empty(key.shape[0], total)
        index = key.new_empty(key.shape[0], total)
        keys.scatter_(1, old_at, self.keys)
        index.scatter_(1, old_at, self.index)
        keys.scatter_(1, new_at, nk)
        index.scatter_(1, new_at, no + (total - m))
        self.keys, self.index = keys, index

    def rebuild(self, lead_pts: Tensor, lead_ok: Tensor) -> None:
        """Index a compacted table from scratch."""
        key = torch.where(lead_ok, self.cell(lead_pts), torch.full_like(lead_ok, 2**62,
                                                                        dtype=torch.long))
        self.keys, self.index = torch.sort(key, dim=1)

    def candidates(self, blk: Tensor, budget: int) -> tuple[Tensor, Tensor] | None:
        """Table rows (B, nb, W) in the neighbouring cells of each point and which are real,
        or ``None`` when W would not be below ``budget`` (crowded cells)."""
        b, nb, _ = blk.shape
        nkey = (self.cell(blk).unsqueeze(-1) + self.neighbours).flatten(1)  # (B, nb * 3^k)
        start = torch.searchsorted(self.keys, nkey)
        end = torch.searchsorted(self.keys, nkey, right=True)
        occ = max(int((end - start).max()) if nb else 0, 1)
        width = occ * self.neighbours.numel()
        if width >= budget:
            return None
        slot = start.unsqueeze(-1) + torch.arange(occ, device=blk.device)  # (B, nb*3^k, occ)
        inside = (slot < end.unsqueeze(-1)).reshape(b, nb, width)
        slot = slot.clamp_max(self.keys.shape[1] - 1).reshape(b, nb * width)
        return torch.gather(self.index, 1, slot).reshape(b, nb, width), inside


def _compact(lead_pts: Tensor, lead_pos: Tensor, lead_ok: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    m = int(lead_ok.sum(1).max())
    rank = torch.sort((~lead_ok).to(torch.int8), dim=1, stable=True).indices[:, :m]
    d = lead_pts.shape[2]
    return (
        torch.gather(lead_pts, 1, rank.unsqueeze(-1).expand(-1, -1, d)),
        torch.gather(lead_pos, 1, rank),
        torch.gather(lead_ok, 1, rank),
    )


def _first_passing(
    cand: Tensor,
    blk: Tensor,
    blk_e: Tensor,
    lpos: Tensor,
    pts: Tensor,
    energy_sorted: Tensor,
    same_basin: SameBasin | None,
) -> Tensor:
    """(B, nb): the position of the nearest candidate in one basin with each point, or -1."""
    ok = cand
    if same_basin is not None and bool(cand.any()):
        bi, ii, ji = torch.nonzero(cand, as_tuple=True)
        leader = lpos[bi, ii, ji]
        passed = same_basin(
            blk[bi, ii], pts[bi, leader], blk_e[bi, ii], energy_sorted[bi, leader], bi
        )
        ok = torch.zeros_like(cand)
        ok[bi, ii, ji] = passed
    has = ok.any(2)
    first = ok.to(torch.uint8).argmax(2, keepdim=True)
    return torch.where(has, torch.gather(lpos, 2, first).squeeze(2), torch.full_like(has, -1,
                                                                                    dtype=torch.long))


def _resolve_block(
    blk: Tensor,
    blk_e: Tensor,
    new: Tensor,
    pos: Tensor,
    radius: float,
    near: int,
    same_basin: SameBasin | None,
) -> tuple[Tensor, Tensor]:
    """Representatives among a block's ``new`` points (in energy order).

    By distance: the greedy rule, ``accepted_i = new_i ∧ ¬∃ j < i: close(i, j) ∧
    accepted_j``, by a fixed-point iteration that converges after as many sweeps as the
    longest chain of close points. By basin: each point links to the nearest of its ``near``
    nearest lower points with no barrier between them, and chains of links end at the
    representative. Returns the accepted flags and each new point's representative position.
    """
    b, nb, _ = blk.shape
    dist = torch.cdist(blk, blk)  # (B, nb, nb), nb bounded
    lower = torch.ones(nb, nb, dtype=torch.bool, device=blk.device).tril(-1)
    usable = lower & new.unsqueeze(1) & new.unsqueeze(2)
    dist = torch.where(usable, dist, torch.full_like(dist, math.inf))
    kk = min(near if same_basin is not None else 32, nb)
    dn, jn = torch.topk(dist, kk, dim=2, largest=False)  # (B, nb, kk)
    joins = dn <= radius
    if same_basin is not None and bool(joins.any()):
        bi, ii, ji = torch.nonzero(joins, as_tuple=True)
        j = jn[bi, ii, ji]
        passed = same_basin(blk[bi, ii], blk[bi, j], blk_e[bi, ii], blk_e[bi, j], bi)
        joins = torch.zeros_like(joins)
        joins[bi, ii, ji] = passed
    if same_basin is not None:
        # Each new point links to its nearest lower new point in one basin with it; the
        # representative of a chain of links (a path with no barrier) is its lowest point.
        first = joins.to(torch.uint8).argmax(2, keepdim=True)
        link = torch.where(joins.any(2), torch.gather(jn, 2, first).squeeze(2),
                           torch.arange(nb, device=blk.device).expand(b, -1))
        while True:
            nxt = torch.gather(link, 1, link)
            if torch.equal(nxt, link):
                break
            link = nxt
        accepted = new & (link == torch.arange(nb, device=blk.device))
        return accepted, torch.gather(pos, 1, link)
    accepted = new.clone()
    while True:
        acc_j = torch.gather(accepted.unsqueeze(1).expand(-1, nb, -1), 2, jn)
        blocked = (joins & acc_j).any(2)
        nxt = new & ~blocked
        if torch.equal(nxt, accepted):
            break
        accepted = nxt
    acc_j = torch.gather(accepted.unsqueeze(1).expand(-1, nb, -1), 2, jn) & joins
    first = acc_j.to(torch.uint8).argmax(2, keepdim=True)
    rep = torch.gather(jn, 2, first).squeeze(2)  # block index of the representative
    rep = torch.where(accepted, torch.arange(nb, device=blk.device).expand(b, -1), rep)
    return accepted, torch.gather(pos, 1, rep)
