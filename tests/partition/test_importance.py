"""Importance sampling of log Z: within its stderr, honest stderr, proposals, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

import ebmlab as eb
from ebmlab.partition import Importance

# A correlated 2-D quadratic: log Z = (d/2) log(2 pi / beta) - 1/2 log det A.
A2 = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)


def quadratic(a: torch.Tensor, mean: list[float] | None = None) -> eb.energies.Quadratic:
    return eb.energies.Quadratic(a.to(torch.get_default_dtype()), mean=mean)


def closed_form(a: torch.Tensor, beta: float) -> float:
    d = a.shape[0]
    logdet = torch.linalg.slogdet(a.to(torch.float64))[1]
    return 0.5 * d * math.log(2 * math.pi / beta) - 0.5 * float(logdet)


def repeated(a: torch.Tensor) -> eb.FunctionEnergy:
    """The quadratic as a conditional energy that ignores x: B inputs = B independent runs."""
    a = a.to(torch.get_default_dtype())
    return eb.FunctionEnergy(lambda y, x: 0.5 * ((y @ a) * y).sum(-1), y_shape=(a.shape[0],))


def test_importance_within_three_stderr(generator):
    # |value - truth| < 3 stderr fails with probability 0.27 % for a normal estimate
    # (N = 20,000 draws; the Jensen bias stderr^2/2 ~ 1e-4 is negligible).
    box = eb.Box([-6.0, -6.0], [6.0, 6.0])
    est = Importance(num_samples=20_000).log_partition(
        quadratic(A2), beta=2.0, domain=box, generator=generator
    )
    assert abs(est.value.item() - closed_form(A2, 2.0)) < 3 * est.stderr.item()
    assert 0 < est.ess.item() < 20_000


def test_importance_gaussian_mixture_is_normalised(generator):
    gm = eb.energies.GaussianMixture.ring(8)
    est = Importance(num_samples=20_000).log_partition(
        gm, domain=eb.Box([-4.0, -4.0], [4.0, 4.0]), generator=generator
    )
    assert abs(est.value.item()) < 3 * est.stderr.item()


def test_importance_with_a_gaussian_proposal_on_the_whole_space(generator):
    # A proposal equal to the normalised target has constant weights: exact, stderr 0.
    cov = torch.linalg.inv(A2)
    proposal = MultivariateNormal(torch.zeros(2), covariance_matrix=cov)
    est = Importance(num_samples=500, proposal=proposal).log_partition(
        quadratic(A2), generator=generator
    )
    assert est.value.item() == pytest.approx(closed_form(A2, 1.0), abs=1e-10)
    assert est.stderr.item() < 1e-6
    assert est.ess.item() == pytest.approx(500.0)


def test_importance_proposal_per_input(generator):
    # A (B,)-batched proposal: input b gets its own proposal; truth is log(2 pi) each.
    energy = eb.FunctionEnergy(lambda y, x: 0.5 * ((y - x) ** 2).sum(-1), y_shape=(2,))
    x = torch.tensor([[0.0, 0.0], [3.0, -1.0]])
    proposal = Independent(Normal(x, 1.5 * torch.ones_like(x)), 1)
    est = Importance(num_samples=4000, proposal=proposal).log_partition(
        energy, x, generator=generator
    )
    assert est.value.shape == (2,)
    assert ((est.value - math.log(2 * math.pi)).abs() < 3 * est.stderr).all()


def test_importance_stderr_is_honest_over_20_runs(generator):
    # 20 independent estimates (one per input). If the stderr is right, z = err / stderr is
    # ~N(0, 1): at least 14 of 20 inside +-2 fails with probability 2e-5 (binomial, p=0.954);
    # and the spread of the errors matches the stderr: the sample sd of 20 normals over the
    # true sd lies in [0.51, 1.56] with probability 99.9 % (sqrt of chi2_19 quantiles / 19).
    x = torch.zeros(20, 1)
    est = Importance(num_samples=2000).log_partition(
        repeated(A2), x, domain=eb.Box([-6.0, -6.0], [6.0, 6.0]), generator=generator
    )
    err = est.value - closed_form(A2, 1.0)
    z = err / est.stderr
    assert (z.abs() < 2).sum() >= 14
    ratio = err.std() / est.stderr.pow(2).mean().sqrt()
    assert 0.5 < ratio < 1.6


def test_importance_is_deterministic_under_a_generator():
    box = eb.Box([-6.0, -6.0], [6.0, 6.0])
    est = [
        Importance(num_samples=300, proposal=MultivariateNormal(torch.zeros(2), torch.eye(2)))
        .log_partition(quadratic(A2), domain=box, generator=torch.Generator().manual_seed(3))
        .value
        for _ in range(2)
    ]
    assert est[0].item() == est[1].item()


def test_importance_errors():
    q = quadratic(A2)
    box = eb.Box([-1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="num_samples"):
        Importance(num_samples=1)
    with pytest.raises(ValueError, match="neither"):
        Importance().log_partition(q)
    with pytest.raises(ValueError, match="event_shape"):
        Importance(proposal=Normal(torch.zeros(2), torch.ones(2))).log_partition(q, domain=box)
    with pytest.raises(TypeError, match="generator"):
        Importance().log_partition(q, domain=box, generator=0)
