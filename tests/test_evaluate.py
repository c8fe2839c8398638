"""eb.evaluate.log_likelihood against the closed form of a Gaussian energy."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb


def _gaussian(d=2, var=0.5):
    return eb.energies.Quadratic(torch.eye(d) / var), var


@pytest.mark.parametrize("estimator", ["grid", "ais", "importance"])
def test_gaussian_log_likelihood_within_its_stderr(estimator):
    q, var = _gaussian()
    g = torch.Generator().manual_seed(0)
    y = math.sqrt(var) * torch.randn(4000, 2, generator=g)
    est = eb.evaluate.log_likelihood(q, y, estimator=estimator,
                                     domain=eb.Box([-5.0, -5.0], [5.0, 5.0]), generator=g)
    # closed form of the mean log density at these points (log Z exact)
    exact = float(-q(y).detach().mean()) - math.log(2 * math.pi * var)
    assert est.stderr.item() > 0
    assert abs(est.value.item() - exact) < 4 * est.stderr.item() + 1e-3


def test_bad_inputs_are_refused():
    q, _ = _gaussian()
    with pytest.raises(TypeError, match="energy"):
        eb.evaluate.log_likelihood(lambda y: y, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="empty"):
        eb.evaluate.log_likelihood(q, torch.zeros(0, 2))
