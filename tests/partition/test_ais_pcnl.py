"""AIS with preconditioned Crank-Nicolson Langevin transitions (kernel="pcnl").

Failure budget (under the null that the code is right): six KS tests at p > 1e-4 -> 6e-4;
four stderr checks with 32 runs, |t_31| < 4 each (p = 3.6e-4) -> 1.4e-3; the argument tests
are deterministic. Total about 2e-3. Seeds: the ``generator`` fixture (EBMLAB_TEST_SEED).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Independent, Normal

import ebmlab as eb
from ebmlab.partition import AIS
from ebmlab.partition.crank_nicolson import CrankNicolsonLangevin

A10 = torch.logspace(-0.5, 1, 10)  # a diagonal precision, condition number 31.6
# A two-component 1-D mixture: weights, means, standard deviations.
W, MU, SD = (0.3, 0.7), (-2.0, 1.5), (0.5, 1.0)


def _mixture_energy(y: torch.Tensor) -> torch.Tensor:
    """-log of the mixture density at y[..., 0] plus a standard normal in the other coordinates."""
    a = y[:, 0:1]
    parts = [math.log(w) - 0.5 * ((a - m) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
             for w, m, s in zip(W, MU, SD, strict=True)]
    return -torch.logsumexp(torch.cat(parts, 1), 1) + 0.5 * (y[:, 1:] ** 2).sum(-1)


def _mixture_draws(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    which = torch.rand(n, generator=generator) < W[1]
    a = torch.where(which, MU[1] + SD[1] * torch.randn(n, generator=generator),
                    MU[0] + SD[0] * torch.randn(n, generator=generator))
    return torch.cat([a[:, None], torch.randn(n, d - 1, generator=generator)], 1)


def _mixture_cdf(t: np.ndarray) -> np.ndarray:
    return sum(w * stats.norm.cdf(t, m, s) for w, m, s in zip(W, MU, SD, strict=True))


@pytest.mark.parametrize("delta", [2.0, 0.3])
def test_pcnl_step_leaves_a_bimodal_1d_target_invariant(delta, generator):
    # A reference far from the target (mean 0, sd 1.6: one Gaussian over two modes); five
    # steps from exact draws must keep the mixture's law (KS against its closed-form CDF).
    n = 20000
    energy = eb.FunctionEnergy(lambda y, x: _mixture_energy(y), y_shape=(1,))
    y = _mixture_draws(n, 1, generator)
    k = CrankNicolsonLangevin(torch.full((n, 1), delta), torch.zeros(n, 1),
                              scale=torch.full((n, 1), 1.6))
    state, rates = k.init(y, energy), []
    for _ in range(5):
        state, info = k.step(state, energy, generator=generator)
        rates.append(info.acceptance_rate.mean().item())
    assert 0.05 < sum(rates) / 5 < 0.99  # the test is not trivial: moves are rejected
    assert (state.position != y).any(1).float().mean() > 0.3  # and many chains moved
    assert stats.kstest(state.position[:, 0].numpy(), _mixture_cdf).pvalue > 1e-4


def test_pcnl_step_with_a_dense_reference_per_input_leaves_a_2d_target_invariant(generator):
    # Two inputs (rows ordered (B, C)) with different correlated references L L^T.
    b, c = 2, 10000
    energy = eb.FunctionEnergy(lambda y, x: _mixture_energy(y), y_shape=(2,))
    y = _mixture_draws(b * c, 2, generator)
    chol = torch.stack([torch.tensor([[1.5, 0.0], [0.6, 0.9]]),
                        torch.tensor([[0.8, 0.0], [-0.5, 1.2]])])
    mean = torch.tensor([[0.5, -0.2], [-1.0, 0.3]]).repeat_interleave(c, 0)
    k = CrankNicolsonLangevin(torch.full((b * c, 1), 1.0), mean, chol=chol)
    state = k.init(y, energy)
    for _ in range(5):
        state, info = k.step(state, energy, generator=generator)
    assert 0.05 < info.acceptance_rate.mean().item() < 0.99
    out = state.position.reshape(b, c, 2)
    for i in range(b):
        assert stats.kstest(out[i, :, 0].numpy(), _mixture_cdf).pvalue > 1e-4
        assert stats.kstest(out[i, :, 1].numpy(), "norm").pvalue > 1e-4


@pytest.mark.parametrize("schedule", ["adaptive", "sigmoid"])
def test_pcnl_ais_is_unbiased_on_a_gaussian(schedule, generator):
    q = eb.energies.Quadratic(torch.diag(A10.to(torch.get_default_dtype())))
    truth = q.log_partition()
    ais = AIS(256, 60, base="gaussian", num_runs=32, kernel="pcnl", schedule=schedule)
    est = ais.log_partition(q, generator=generator)
    assert abs(est.value.item() - truth) < 4 * est.stderr.item()
    assert est.stderr.item() < 0.2  # informative (typically 0.02-0.05)


def _double_wells(pairs: int) -> tuple[eb.Energy, float]:
    def fn(y: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        a, b = y[:, 0::2], y[:, 1::2]
        return (a**4 - 6 * a**2 - 0.5 * a + 0.5 * b**2).sum(-1)

    t = np.linspace(-6, 6, 200001)
    z1 = np.trapezoid(np.exp(-(t**4) + 6 * t**2 + 0.5 * t), t)
    return eb.FunctionEnergy(fn, y_shape=(2 * pairs,)), pairs * (
        math.log(z1) + 0.5 * math.log(2 * math.pi))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_pcnl_ais_is_unbiased_on_double_wells(bidirectional, generator):
    # Two pairs (4-D) of ManyWell's asymmetric double well: log Z by 1-D quadrature.
    energy, truth = _double_wells(2)
    base = Independent(Normal(torch.zeros(4), 2.0 * torch.ones(4)), 1)
    ais = AIS(256, 100, base=base, num_runs=32, kernel="pcnl", bidirectional=bidirectional)
    est = ais.log_partition(energy, generator=generator)
    assert abs(est.value.item() - truth) < 4 * est.stderr.item()
    assert est.stderr.item() < 0.3
    if bidirectional:
        assert est.lower.item() < truth + 0.05 and est.upper.item() > truth - 0.05


def test_pcnl_needs_a_gradient_and_takes_no_momentum():
    def fn(y: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(0.5 * (y.detach().numpy() ** 2).sum(-1)))

    energy = eb.FunctionEnergy(fn, y_shape=(2,))
    box = eb.Box([-5.0, -5.0], [5.0, 5.0])
    for kernel in ("pcnl", "ghmc"):  # the same rule for every gradient kernel
        with pytest.raises(ValueError, match=f"kernel='{kernel}' needs the energy's gradient"):
            AIS(64, 20, kernel=kernel).log_partition(energy, domain=box)
    with pytest.raises(ValueError, match="momentum is the persistence"):
        AIS(kernel="pcnl", momentum=0.5)
    with pytest.raises(ValueError, match="target_acceptance"):
        AIS(kernel="pcnl", target_acceptance=1.5)


def test_nearest_params_gathers_the_reference_means_per_input():
    from ebmlab.partition.ladder import NearestParams

    b, d = 2, 3
    params = [(torch.full((b, 1, 1), 0.1 * (i + 1)), torch.ones(b, 1, d), None) for i in range(2)]
    means = [torch.zeros(b, 1, d), torch.ones(b, 1, d)]
    near = NearestParams(params, torch.tensor([[0, 1]]), means)
    assert near.mean(0)[:, 0, 0].tolist() == [0.0, 1.0]  # input 0 at step 0, input 1 at 1
    assert NearestParams(params, torch.tensor([[0, 1]])).mean(0) is None


def test_pooled_fit_reweights_neighbouring_steps_to_each_steps_target(generator):
    # Tempered path from N(0, I) to F = y'Py/2, P = diag(1, 10): the law at position t is
    # N(0, diag(1 / (1 + 9t)) on the second coordinate, 1 on the first). Step k's particles
    # are exact draws at temps[k] (the previous step's target); its kernel targets
    # temps[k + 1]. The pooled fit must give the variances at temps[k + 1] (0.217 at 0.4),
    # not those of the particles' own position (0.270 at 0.3): 25 % apart. With 5 steps of
    # 4,000 draws (effective size > 8,000) a variance's relative error is < 1.6 %; tolerance
    # 6 % (> 3.7 se), the mean to 0.03 (> 5 se). Failure budget < 1e-3 (under the null).
    from ebmlab.partition.annealing import PooledFit

    temps, c, prec = [i / 10 for i in range(11)], 4000, torch.tensor([1.0, 10.0])

    def var_at(t):
        return 1.0 / ((1 - t) + t * prec)

    def log_p0(y):
        return -0.5 * y.square().sum(-1) - math.log(2 * math.pi)

    pool = PooledFit(2, temps, 1, 1.0, log_p0)
    done = {}
    for k in range(10):
        flat = torch.randn(1, c, 2, generator=generator) * var_at(temps[k]).sqrt()
        f = None if k == 0 else 0.5 * (flat.square() * prec).sum(-1).reshape(-1)
        done.update(pool.add(k, flat, f))
    done.update(pool.finish(9))
    assert sorted(done) == list(range(10))
    for k in (1, 3, 6, 9):
        mean, spread, chol = done[k]
        want = var_at(temps[k + 1])
        assert torch.allclose(spread[0, 0].square(), want, rtol=0.06), (k, spread, want)
        assert mean.abs().max() < 0.03
        cov = chol[0] @ chol[0].T  # shrunk towards the diagonal: the diagonal is kept
        assert torch.allclose(torch.diagonal(cov), want, rtol=0.06)
    # Step 0's own particles are the base draws (F unknown): its fit uses steps 1 and 2 only.
    assert torch.allclose(done[0][1][0, 0].square(), var_at(0.1), rtol=0.06)
    # ahead=0: only this and earlier steps (the pilot's own fit); with none usable, None.
    assert pool.fit(9, 0) is not None
    only = PooledFit(2, temps, 1, 1.0, log_p0)
    only.add(0, torch.randn(1, c, 2, generator=generator), None)
    assert only.fit(0, 0) is None
