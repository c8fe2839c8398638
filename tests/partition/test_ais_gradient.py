"""AIS's gradient transitions (the default), the random-walk fallback and reverse-AIS bounds.

Failure budget (under the null that the code is right): two stderr tests with 32 runs,
|t_31| < 4, p = 3.6e-4 each -> 7.2e-4; the bracket tests put the truth 10+ sd of the
mean log weight inside each gap (gaps ~1.1 nats, sd ~0.1) -> ~0; the fallback test is
deterministic. Total below 1e-3. Seeds: the ``generator`` fixture (EBMLAB_TEST_SEED).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ebmlab as eb
from ebmlab.partition import AIS

A10 = torch.logspace(-0.5, 1, 10)  # a diagonal precision, condition number 31.6


def _gaussian_10d() -> tuple[eb.energies.Quadratic, float]:
    q = eb.energies.Quadratic(torch.diag(A10.to(torch.get_default_dtype())))
    return q, q.log_partition()


@pytest.mark.parametrize("kernel", [None, "hmc"])
def test_gradient_transitions_are_unbiased_within_stderr(kernel, generator):
    q, truth = _gaussian_10d()
    ais = AIS(num_chains=256, num_temperatures=60, base="gaussian", num_runs=32, kernel=kernel)
    est = ais.log_partition(q, generator=generator)
    assert abs(est.value.item() - truth) < 4 * est.stderr.item()
    assert est.stderr.item() < 0.4  # informative (typically 0.05-0.25)


def test_non_differentiable_energy_falls_back_to_the_random_walk():
    # An energy computed through numpy has no autograd gradient: the default kernel is then
    # the random walk, with the very same numbers as kernel="random_walk".
    def fn(y, x):
        out = 0.5 * (y.detach().numpy() ** 2).sum(-1)
        return torch.from_numpy(np.ascontiguousarray(out))

    energy = eb.FunctionEnergy(fn, y_shape=(2,))
    box = eb.Box([-5.0, -5.0], [5.0, 5.0])
    runs = [AIS(64, 20, kernel=k).log_partition(energy, domain=box,
                                                generator=torch.Generator().manual_seed(0))
            for k in (None, "random_walk")]
    assert torch.equal(runs[0].value, runs[1].value)


@pytest.mark.parametrize("start", ["exact", "resampled"])
def test_reverse_ais_brackets_a_known_log_z(start, generator):
    # A short ladder (15 temperatures) leaves a gap of ~1 nat on each side; the mean log
    # weights of 256 chains have sd ~0.1, so the bracket holds by > 10 sd.
    q, truth = _gaussian_10d()
    samples = None
    if start == "exact":
        samples = torch.randn(256, 10, generator=generator) / A10.sqrt()
    ais = AIS(256, 15, base="gaussian", bidirectional=True)
    est = ais.log_partition(q, generator=generator, samples=samples)
    assert est.lower.item() < truth < est.upper.item()
    assert est.lower.item() <= est.value.item() + 1e-9  # Jensen: mean log w <= log mean w
    # A longer ladder narrows the bracket.
    long = AIS(256, 120, base="gaussian", bidirectional=True).log_partition(
        q, generator=generator, samples=samples)
    assert long.upper.item() - long.lower.item() < 0.5 * (est.upper.item() - est.lower.item())


def test_bidirectional_with_inputs_gives_one_bracket_per_input(generator):
    energy = eb.FunctionEnergy(lambda y, x: 0.5 * ((y - x) ** 2).sum(-1) * 4.0, y_shape=(2,))
    x = torch.tensor([[0.0, 0.5], [1.0, -1.0]])
    est = AIS(64, 10, base="gaussian", bidirectional=True).log_partition(
        energy, x, generator=generator)
    assert est.lower.shape == (2,) and est.upper.shape == (2,)
    assert bool((est.lower < est.upper).all())
    assert AIS(64, 10, base="gaussian").log_partition(energy, x, generator=generator).upper is None
