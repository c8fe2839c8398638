"""Estimate (delta method), the estimator protocols and registry, and errors shared by all."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab.partition import (
    AIS,
    ESTIMATORS,
    Estimate,
    Estimator,
    Grid,
    Importance,
    SamplingEstimator,
)


def test_estimate_from_log_weights_matches_the_delta_method():
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    est = Estimate.from_log_weights(w.log() + 100.0)  # a shift far outside exp's range
    mean, sd = w.mean(), w.std()  # unbiased sd
    assert est.value.item() == pytest.approx(math.log(mean) + 100.0, abs=1e-12)
    assert est.stderr.item() == pytest.approx(float(sd / (2 * mean)), abs=1e-12)
    assert est.ess.item() == pytest.approx(float(w.sum() ** 2 / (w**2).sum()), abs=1e-12)


def test_registry_and_protocols():
    assert ESTIMATORS == {"grid": Grid, "importance": Importance, "ais": AIS,
                          "enumerate": eb.partition.Enumerate}
    assert eb.gibbs.ESTIMATORS is ESTIMATORS  # the registry's former home still works
    for cls in ESTIMATORS.values():
        assert isinstance(cls(), Estimator)
    assert isinstance(Importance(), SamplingEstimator) and isinstance(AIS(), SamplingEstimator)
    assert not isinstance(Grid(), SamplingEstimator)  # Gibbs samples the grid's cells exactly
    assert not isinstance(object(), Estimator)


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_non_finite_energies_are_reported(bad, generator):
    def fn(y, x):
        e = (y**2).sum(-1)
        return torch.where(y[:, 0] > 0.5, torch.full_like(e, bad), e)

    energy = eb.FunctionEnergy(fn, y_shape=(2,))
    box = eb.Box([-1.0, -1.0], [1.0, 1.0])
    for estimator in (Grid(num=16), Importance(num_samples=100), AIS(16, 5)):
        with pytest.raises(ValueError, match="non-finite"):
            estimator.log_partition(energy, domain=box, generator=generator)
