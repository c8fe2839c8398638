"""The burn-in's mass estimates: a window's variance from its halves, and partial pooling.

Failure budget: the variance identity is exact (float64 rounding); the pooling tests use
iid Gaussian draws with margins of > 5 sd of the estimates they bound. Total < 1e-6.
"""

from __future__ import annotations

import pytest
import torch

from ebmlab.samplers.mass import WindowVariance, partially_pooled, regularised


def _window(draws: torch.Tensor, split: int) -> WindowVariance:
    w = WindowVariance(draws[0], 2 * split)  # the first half: the first ``split`` draws
    for y in draws:
        w.update(y)
    assert [h.count for h in w.halves] == [split, len(draws) - split]
    return w


def test_the_halves_combine_to_the_one_pass_variance(generator):
    draws = torch.randn(101, 5, 3, generator=generator, dtype=torch.float64) * 2 + 1
    for split in (0, 30, 50, 100):
        got = _window(draws, split).variance("none")
        torch.testing.assert_close(got, regularised(draws.var(0), 101), rtol=1e-12, atol=0)
    full = _window(draws, 50).variance("full")
    with pytest.raises(ValueError, match="pool must be one of"):
        _window(draws, 50).variance("pooled")
    torch.testing.assert_close(full, regularised(draws.var(0).mean(0), 101), rtol=1e-12, atol=0)


def test_one_target_is_pooled_and_different_targets_are_kept(generator):
    # 32 chains x 200 iid draws: log-variance noise sqrt(2 / 200) = 0.1 per chain.
    scale = torch.ones(32, 2, dtype=torch.float64)
    scale[16:, 1] = 10.0  # coordinate 1: two groups 100x apart in variance
    draws = torch.randn(200, 32, 2, generator=generator, dtype=torch.float64) * scale
    v = _window(draws, 100).variance("partial").log()
    raw = _window(draws, 100).variance("none").log()
    # Coordinate 0 (one target): shrunk to a spread well below the raw noise (0.1).
    assert float(raw[:, 0].std()) > 0.06 and float(v[:, 0].std()) < 0.5 * float(raw[:, 0].std())
    # Coordinate 1 (two groups, spread >> noise): each chain keeps its own, within 0.1 in log.
    assert float((v[:, 1] - raw[:, 1]).abs().max()) < 0.1
    assert float(v[16:, 1].min() - v[:16, 1].max()) > 3.0  # log 100 = 4.6


def test_partially_pooled_limits():
    lv = torch.tensor([[0.3], [-0.3], [0.0], [0.0]], dtype=torch.float64)
    spread = float(lv.var(0))
    pooled = partially_pooled(lv, torch.tensor([10 * spread], dtype=torch.float64))
    torch.testing.assert_close(pooled, torch.zeros_like(lv))
    kept = partially_pooled(lv, torch.tensor([0.0], dtype=torch.float64))
    torch.testing.assert_close(kept, lv)
    half = partially_pooled(lv, torch.tensor([spread / 2], dtype=torch.float64))
    torch.testing.assert_close(half, lv / 2)  # tau^2 = noise: weight 1/2
    two = lv[:2]
    torch.testing.assert_close(partially_pooled(two, torch.tensor([1.0])), two)  # < 3 chains
