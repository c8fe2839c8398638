"""Annealed importance sampling of log Z: within its stderr, kernels, batches, schedules, errors."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab.partition import AIS, RandomWalkMetropolis

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


def test_ais_within_three_stderr(generator):
    # With 16 runs the estimate over its stderr is ~t_15: |t| > 3 with probability 0.9 %.
    box = eb.Box([-6.0, -6.0], [6.0, 6.0])
    ais = AIS(num_chains=128, num_temperatures=100, num_runs=16)
    est = ais.log_partition(quadratic(A2), beta=2.0, domain=box, generator=generator)
    assert abs(est.value.item() - closed_form(A2, 2.0)) < 3 * est.stderr.item()
    assert est.stderr.item() < 0.25  # and it is informative


def test_ais_gaussian_mixture_is_normalised(generator):
    gm = eb.energies.GaussianMixture.ring(8)
    ais = AIS(num_chains=128, num_temperatures=50, num_runs=16)
    est = ais.log_partition(gm, domain=eb.Box([-4.0, -4.0], [4.0, 4.0]), generator=generator)
    assert abs(est.value.item()) < 3 * est.stderr.item()


def test_ais_gaussian_base_in_10d(generator):
    # The uniform base is hopeless in 10-D (log volume 20.8 vs log Z 2.3); N(0, I) is close.
    a = 4.0 * torch.eye(10)
    ais = AIS(num_chains=64, num_temperatures=40, base="gaussian", num_steps=2, num_runs=16)
    est = ais.log_partition(quadratic(a), generator=generator)
    assert abs(est.value.item() - closed_form(a, 1.0)) < 3 * est.stderr.item()


def test_ais_stderr_is_honest_over_20_runs(generator):
    # Each stderr comes from R = 8 runs, so z is ~t_7: P(|z| < 2) = 0.914 and at least 14 of
    # 20 inside fails with probability 1e-3 (binomial). The sd-ratio bound as for IS, widened
    # for the t_7 noise of each stderr.
    x = torch.zeros(20, 1)
    ais = AIS(num_chains=64, num_temperatures=30, num_runs=8)
    est = ais.log_partition(
        repeated(A2), x, domain=eb.Box([-6.0, -6.0], [6.0, 6.0]), generator=generator
    )
    err = est.value - closed_form(A2, 1.0)
    assert (err.abs() < 2 * est.stderr).sum() >= 14
    ratio = err.std() / est.stderr.pow(2).mean().sqrt()
    assert 0.5 < ratio < 2.0


def test_ais_with_a_fixed_kernel_and_a_samplers_kernel(generator):
    box = eb.Box([-6.0, -6.0], [6.0, 6.0])
    truth = closed_form(A2, 1.0)
    for kernel in (RandomWalkMetropolis(0.4), eb.samplers.MALA(0.05)):
        ais = AIS(num_chains=64, num_temperatures=40, kernel=kernel, num_runs=16)
        est = ais.log_partition(quadratic(A2), domain=box, generator=generator)
        # t_15 at 3.5: a failure rate of 0.3 % per kernel.
        assert abs(est.value.item() - truth) < 3.5 * est.stderr.item(), kernel


def test_ais_batches_agree_with_one_at_a_time(generator):
    # Different random draws, so agreement is within the combined stderr (4 sd of t_15).
    energy = eb.FunctionEnergy(lambda y, x: 0.5 * ((y - x) ** 2).sum(-1) * (1 + x[:, 0] ** 2))
    x = torch.tensor([[0.0, 0.5], [1.0, -1.0]])
    box = eb.Box([-6.0, -6.0], [6.0, 6.0])
    ais = AIS(num_chains=64, num_temperatures=30, num_runs=16)
    batch = ais.log_partition(energy, x, domain=box, generator=generator)
    for i in range(2):
        one = ais.log_partition(energy, x[i : i + 1], domain=box, generator=generator)
        tol = 4 * math.hypot(batch.stderr[i].item(), one.stderr[0].item())
        assert abs(batch.value[i].item() - one.value[0].item()) < tol


def test_ais_is_deterministic_under_a_generator():
    box = eb.Box([-6.0, -6.0], [6.0, 6.0])
    ais = AIS(num_chains=32, num_temperatures=10)
    values = [
        ais.log_partition(quadratic(A2), domain=box, generator=torch.Generator().manual_seed(1))
        .value.item()
        for _ in range(2)
    ]
    assert values[0] == values[1]


def test_ais_schedules():
    for kind in ("sigmoid", "linear", "geometric"):
        t = eb.partition.schedule(20, kind)
        assert t[0] == 0 and t[-1] == 1 and (t.diff() > 0).all() and t.shape == (21,)
    custom = AIS(schedule=torch.tensor([0.0, 0.3, 1.0]), num_chains=16)
    assert custom.num_temperatures == 2


def test_ais_errors():
    q = quadratic(A2)
    with pytest.raises(ValueError, match="needs a domain"):
        AIS().log_partition(q)
    with pytest.raises(ValueError, match="beta=1"):
        AIS(kernel=RandomWalkMetropolis(0.1, beta=2.0))
    with pytest.raises(TypeError, match="init"):
        AIS(kernel=object())
    with pytest.raises(ValueError, match="multiple of num_runs"):
        AIS(num_chains=10, num_runs=4)
    with pytest.raises(ValueError, match="schedule"):
        AIS(schedule="cosine")
    with pytest.raises(ValueError, match="increase"):
        AIS(schedule=torch.tensor([0.0, 0.7, 0.5, 1.0]))
    for bad in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError, match="target_acceptance"):
            AIS(target_acceptance=bad)
    with pytest.raises(ValueError, match="kernel"):
        AIS(kernel="langevin")
    with pytest.raises(TypeError, match="bidirectional"):
        AIS(bidirectional="yes")
    with pytest.raises(ValueError, match="samples"):
        AIS(bidirectional=True).log_partition(q, domain=eb.Box([-1, -1], [1, 1]),
                                              samples=torch.zeros(4, 3))
