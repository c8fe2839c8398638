"""Regression sets: the laws of Gustafsson's ds1/ds2 (optimal NLLs), the step and the circle."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.data import regression as r


def _entropy(log_prob, low: float, high: float) -> float:
    # E_x H(y|x) by the midpoint rule: 3,000 x cells and 20,000 y cells over the support;
    # the densities are smooth on this scale (narrowest sd 0.007 = 35 y cells).
    x = torch.linspace(-3, 3, 3001)[:-1, None] + 1e-3
    y = torch.linspace(low, high, 20001)[None, :-1] + (high - low) / 40000
    lp = log_prob(x, y)
    p = lp.exp()
    dy = (high - low) / 20000
    assert torch.allclose((p.sum(-1) * dy), torch.ones(3000), atol=1e-4)  # normalised
    return float(-(torch.where(p > 0, p * lp, torch.zeros_like(p))).sum(-1).mean() * dy)


@pytest.mark.parametrize(("name", "low", "high"), [("ds1", -1.5, 2.5), ("ds2", -1.8, 1.8)])
def test_optimal_nll_matches_the_paper(name, low, high):
    log_prob = getattr(r, f"gustafsson_{name}_log_prob")
    # The paper prints three decimals: agree to its rounding.
    assert abs(_entropy(log_prob, low, high) - r.GUSTAFSSON_OPTIMAL_NLL[name]) < 1.5e-3


@pytest.mark.parametrize("name", ["ds1", "ds2"])
def test_samples_follow_the_log_density(name, generator):
    draw = getattr(r, f"gustafsson_{name}")
    log_prob = getattr(r, f"gustafsson_{name}_log_prob")
    x, y = draw(40000, generator=generator)
    assert x.shape == y.shape == (40000, 1)
    assert bool((x >= -3).all() and (x <= 3).all())
    nll = -log_prob(x, y)
    # The sample mean of -log p estimates E_x H(y|x) with sd(-log p)/sqrt(N): 4 sd of slack.
    tol = 4 * float(nll.std()) / math.sqrt(40000)
    assert abs(float(nll.mean()) - r.GUSTAFSSON_OPTIMAL_NLL[name]) < tol + 1.5e-3


def test_ds1_branch_weights(generator):
    x, y = r.gustafsson_ds1(40000, generator=generator)
    left = x[:, 0] < -1
    share = float((y[left, 0] * x[left, 0].sin() > 0).double().mean())
    # Binomial sd sqrt(0.16 / n) with n ~ 13,000 is 0.0035: 4 sd of slack.
    assert abs(share - 0.8) < 0.015
    assert bool((y[x[:, 0] >= 0] > -1).all())


def test_step_and_circle(generator):
    x, y = r.step_function(500, scale=1e-6, generator=generator)
    assert torch.allclose(y, torch.where(x < 0, -1.0, 1.0), atol=1e-4)
    x, y = r.circle(500, radius=2.0, scale=1e-6, generator=generator)
    assert torch.allclose(x**2 + y**2, torch.full_like(x, 4.0), atol=1e-4)
    assert bool((y > 0).any() and (y < 0).any())


def test_dtype_and_errors():
    x, y = r.gustafsson_ds2(3, dtype=torch.float32)
    assert x.dtype == y.dtype == torch.float32
    with pytest.raises(ValueError, match="num"):
        r.gustafsson_ds1(0)
    with pytest.raises(TypeError, match="generator"):
        r.circle(3, generator=1)
    with pytest.raises(ValueError, match="broadcast"):
        r.gustafsson_ds1_log_prob(torch.zeros(3), torch.zeros(2))
