"""The merge's grid of cells (every end point its own minimum) gives the window's answer."""

from __future__ import annotations

import pytest
import torch

from ebmlab.inference import merge
from ebmlab.inference.merge import merge_minima, segment_test


def _points(s: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(d)
    pts = torch.rand(3, s, d, generator=g, dtype=torch.float64) * 4 - 2
    half = s - s // 2
    pts[:, s // 2 :] = pts[:, :half] + 1e-3 * torch.randn(3, half, d, generator=g,
                                                          dtype=torch.float64)
    pts[2] = torch.round(pts[2] * 3) / 3 + 1e-3 * torch.randn(s, d, generator=g,
                                                              dtype=torch.float64)
    energy = torch.rand(3, s, generator=g, dtype=torch.float64)
    kept = torch.rand(3, s, generator=g) > 0.05
    kept[1, : s // 3] = False  # inputs with different numbers of kept points
    return pts, energy, kept


@pytest.mark.parametrize("d", [2, 3, 7])
@pytest.mark.parametrize("by_basin", [False, True])
def test_cell_index_gives_the_same_merge_as_the_window(d: int, by_basin: bool,
                                                       monkeypatch: pytest.MonkeyPatch):
    pts, energy, kept = _points(3000, d)
    tol = 4e-3 * d**0.5
    same_basin = None
    if by_basin:  # a rippled landscape: some close pairs have a barrier between them
        same_basin = segment_test(lambda p, rows: 1e-2 * torch.sin(37 * p).sum(-1),
                                  torch.full((3,), 1e-3))
    with_cells = merge_minima(pts, energy, kept, tol, same_basin=same_basin)
    monkeypatch.setattr(merge._CellIndex, "build", staticmethod(lambda *a: None))
    window = merge_minima(pts, energy, kept, tol, same_basin=same_basin)
    for a, b in zip(with_cells, window, strict=True):
        assert torch.equal(a, b)
    assert int(with_cells.count.min()) > 100  # enough representatives for the grid to be used


def test_cell_index_keeps_the_table_sorted_by_cell():
    pts = torch.rand(2, 400, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    remaining = torch.ones(2, 400, dtype=torch.bool)
    cells = merge._CellIndex.build(pts, remaining, 0.05)
    assert cells is not None
    ok = torch.ones(2, 100, dtype=torch.bool)
    ok[1, 50:] = False
    for i in range(4):
        cells.append(pts[:, 100 * i : 100 * (i + 1)], ok)
    assert bool((cells.keys[:, 1:] >= cells.keys[:, :-1]).all())
    flat = pts.reshape(2, 400, 4)
    real = cells.keys < 2**62
    assert real.sum(1).tolist() == [400, 200]
    key = cells.cell(torch.gather(flat, 1, cells.index.unsqueeze(-1).expand(-1, -1, 4)))
    assert torch.equal(torch.where(real, key, cells.keys), cells.keys)
