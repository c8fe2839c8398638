"""Bad-input suite: every public entry point with wrong shapes, dtypes (half, int, complex,
mixed), the meta device, empty batches, NaN/Inf inputs and energies, wrong return types,
non-positive sizes and out-of-range hyper-parameters gives a ValueError/TypeError naming the
argument, a documented flag, or the correct result (the cases are in ``cases.py``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import ebmlab as eb

sys.path.insert(0, str(Path(__file__).parent))
from cases import CASES, run_case  # noqa: E402


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_flagged_or_right(case: object) -> None:
    outcome, detail = run_case(case)
    assert outcome in ("clear", "flagged", "correct"), f"{outcome}: {detail}"


@pytest.mark.parametrize("beta", [1e-30, 1e-12, 1e-9, 1e-5, 0.1, 1.0, 10.0, 1e4])
@pytest.mark.parametrize("reduction", ["mean", "integral"])
def test_free_energy_is_accurate_in_float32_at_every_beta(beta: float, reduction: str) -> None:
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    ell = eb.energies.Ellipse()
    y = torch.tensor([[0.0, 0.0], [1.5, -0.5], [3.0, 1.0]])
    with torch.no_grad():
        e = ell.pairwise(y.double(), grid.points(dtype=torch.float64), None)
    log_w = grid.log_weights(reduction, dtype=torch.float64)
    log_total = 0.0 if reduction == "mean" else float(torch.logsumexp(log_w, 0))
    w = torch.exp(log_w - log_total)
    if beta < 1e-6:  # F -> sum w E - log W / beta (first order in beta is below rounding)
        ref = e @ w - log_total / beta
    else:
        ref = -(torch.logsumexp(log_w - beta * e, 1)) / beta
    scale = float(ref.abs().max())
    for chunk in (None, 7):
        free = eb.FreeEnergy(ell, grid, beta=beta, reduction=reduction, chunk_size=chunk)
        yg = y.clone().requires_grad_(True)
        out = free(yg)
        out.sum().backward()
        with torch.no_grad():
            streamed = free(y)
        value, grad = free.energy_and_grad(y)
        for f in (out.detach(), streamed, value):
            assert (f.double() - ref).abs().max() <= 1e-5 * scale
        assert torch.allclose(yg.grad, grad, atol=1e-5)


def test_free_energy_small_beta_gives_the_mean_energy() -> None:
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    for beta in (1e-9, 1e-30):
        f = eb.FreeEnergy(eb.energies.Ellipse(), grid, beta=beta)(torch.zeros(1, 2))
        assert abs(float(f) - 3.125) < 1e-5
