"""AIS's adaptive ladder (schedule="adaptive") and persistent-momentum transitions (kernel="ghmc").

Failure budget (under the null that the code is right): seven stderr checks with 32 runs,
|t_31| < 4 each (p = 3.6e-4) -> 2.5e-3; the invariance test's moments are checked at 6 sd of
their sampling error (~1e-8); the ladder and argument tests are deterministic. Total about
2.5e-3. Seeds: the ``generator`` fixture (EBMLAB_TEST_SEED).
"""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab.partition import AIS
from ebmlab.partition.ladder import equal_length_ladder, nearest_steps, spread_of_u
from ebmlab.partition.momentum import PersistentLeapfrog

A10 = torch.logspace(-0.5, 1, 10)  # a diagonal precision, condition number 31.6


def _gaussian_10d() -> tuple[eb.energies.Quadratic, float]:
    q = eb.energies.Quadratic(torch.diag(A10.to(torch.get_default_dtype())))
    return q, q.log_partition()


def test_equal_length_ladder_increases_from_0_to_1_and_inverts_the_length():
    t = torch.linspace(0, 1, 51, dtype=torch.float64)
    # sd_t = 1 / (1 + 9 t): the length is log(1 + 9 t) / 9, inverted in closed form.
    sd = torch.stack([1 / (1 + 9 * t), torch.ones_like(t)])
    ladder = equal_length_ladder(t.tolist(), sd, 20)
    assert ladder.shape == (2, 21)
    assert ladder[:, 0].eq(0).all() and ladder[:, -1].eq(1).all()
    assert (ladder.diff(dim=1) > 0).all()
    exact = (torch.exp(math.log(10) * torch.linspace(0, 1, 21, dtype=torch.float64)) - 1) / 9
    assert torch.allclose(ladder[0], exact, atol=2e-3)  # trapezoid error on 50 pieces
    assert torch.allclose(ladder[1], torch.linspace(0, 1, 21, dtype=torch.float64))


def test_equal_length_ladder_survives_zero_and_non_finite_spreads():
    t = [0.0, 0.25, 0.5, 0.75, 1.0]
    sd = torch.tensor([[0.0, 0.0, math.nan, 1.0, 1.0], [math.inf, 1.0, 1.0, 1.0, 1.0]])
    ladder = equal_length_ladder(t, sd, 8)
    assert (ladder.diff(dim=1) > 0).all() and torch.isfinite(ladder).all()


def test_spread_of_u_and_nearest_steps():
    inc = [torch.tensor([0.0, -2.0, -1.0, -1.0]), torch.tensor([0.0, -4.0, 1.0, -inf()])]
    sd = spread_of_u(inc, [0.0, 0.5, 1.0], 2)  # two inputs of two chains
    assert sd.shape == (2, 3)
    assert sd[0].tolist() == pytest.approx([2 * math.sqrt(2), 4 * math.sqrt(2), 4 * math.sqrt(2)])
    assert sd[1, 0].item() == 0.0  # the non-finite increment of input 1 is left out
    idx = nearest_steps([0.0, 0.5, 1.0], torch.tensor([[0.0, 0.2, 0.7, 1.0]]), 2)
    assert idx[:, 0].tolist() == [0, 1, 0, 1, 2, 3]  # 0.7 is nearer 0.5 than 1


def inf() -> float:
    return math.inf


@pytest.mark.parametrize("kernel", [None, "ghmc", "random_walk"])
def test_adaptive_ladder_is_unbiased_within_stderr(kernel, generator):
    q, truth = _gaussian_10d()
    ais = AIS(256, 60, base="gaussian", num_runs=32, kernel=kernel, schedule="adaptive")
    est = ais.log_partition(q, generator=generator)
    assert abs(est.value.item() - truth) < 4 * est.stderr.item()
    assert est.stderr.item() < 0.5  # informative (gradient kernels typically 0.05-0.2)


def test_adaptive_ladder_of_the_run_is_per_input_and_increasing(generator):
    # Two inputs with different widths get different ladders, each from 0 to 1. For
    # N(0, I / a) from N(0, I) the optimal ladder is t_j = (a^(j/K) - 1) / (a - 1): at
    # j/K = 1/6, 0.12 for a = 2 and 0.019 for a = 50 (the pilot's estimate is within ~50 %).
    energy = eb.FunctionEnergy(lambda y, x: 0.5 * (y * y).sum(-1) * x[:, 0], y_shape=(3,))
    x = torch.tensor([[2.0], [50.0]])
    ais = AIS(256, 30, base="gaussian", num_runs=32, schedule="adaptive")
    _, _, run, _ = ais._forward(energy, x, beta=1.0, domain=None, generator=generator)
    ladder = torch.stack([torch.as_tensor(t).expand(2) for t in run.temperatures], 1)
    assert ladder.shape == (2, 31)
    assert ladder[:, 0].eq(0).all() and ladder[:, -1].eq(1).all()
    assert (ladder.diff(dim=1) > 0).all()
    assert not torch.allclose(ladder[0], ladder[1])
    # The sharp target changes fastest near t = 0: its ladder is much denser there.
    assert ladder[1, 5] < 0.5 * ladder[0, 5]
    est = ais.log_partition(energy, x, generator=generator)
    truth = 1.5 * torch.log(2 * math.pi / x[:, 0])  # log of the integral of exp(-a y^2 / 2)
    assert ((est.value - truth).abs() < 4 * est.stderr).all()


def test_persistent_momentum_ais_is_unbiased_within_stderr(generator):
    q, truth = _gaussian_10d()
    ais = AIS(256, 60, base="gaussian", num_runs=32, kernel="ghmc", momentum=0.9,
              num_steps=2)
    est = ais.log_partition(q, generator=generator)
    assert abs(est.value.item() - truth) < 4 * est.stderr.item()
    assert est.stderr.item() < 0.5


def test_persistent_leapfrog_leaves_a_gaussian_invariant(generator):
    # From exact draws of N(0, diag(1/a)), 20 steps with alpha = 0.9 and a diagonal scale keep
    # the variances: 4,000 chains give each variance to ~2.2 % (1 sd), checked at 6 sd.
    a = torch.tensor([1.0, 4.0, 16.0])
    q = eb.energies.Quadratic(torch.diag(a))
    n = 4000
    y = torch.randn(n, 3, generator=generator) / a.sqrt()
    kernel = PersistentLeapfrog(torch.full((n, 1), 0.6), 0.9, scale=(1 / a.sqrt()).expand(n, 3))
    state = kernel.init(y, q)
    moved = torch.zeros(n, dtype=torch.bool)
    for _ in range(20):
        state, info = kernel.step(state, q, generator=generator)
        moved |= info.is_accepted
    var = state.position.var(0) * a
    assert moved.float().mean() > 0.9
    assert ((var - 1).abs() < 6 * math.sqrt(2 / n)).all(), var
    assert (state.momentum.var(0) - 1).abs().max() < 6 * math.sqrt(2 / n)


def test_bad_momentum_and_schedule_arguments_raise():
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\)"):
        AIS(kernel="ghmc", momentum=1.0)
    with pytest.raises(ValueError, match="momentum must lie"):
        AIS(kernel="ghmc", momentum=-0.1)
    with pytest.raises(TypeError, match="momentum must be a float"):
        AIS(kernel="ghmc", momentum="high")
    with pytest.raises(TypeError, match="momentum must be a float"):
        AIS(kernel="ghmc", momentum=True)
    with pytest.raises(ValueError, match="momentum is the persistence of kernel='ghmc'"):
        AIS(kernel="mala", momentum=0.5)
    with pytest.raises(ValueError, match="adaptive"):
        AIS(schedule="optimal")


def test_nearest_params_stands_in_a_diagonal_factor_for_a_missing_dense_one():
    from ebmlab.partition.ladder import NearestParams

    b, d = 2, 3
    spread = torch.rand(b, 1, d) + 0.5
    dense = torch.linalg.cholesky(torch.eye(d) * 2.0).expand(b, d, d).clone()
    params = [(torch.full((b, 1, 1), 0.1), spread, None),
              (torch.full((b, 1, 1), 0.2), spread * 2, dense)]
    near = NearestParams(params, torch.tensor([[0, 1]]))  # input 0 at step 0, input 1 at 1
    factor, sp, chol = near[0]
    assert factor.flatten().tolist() == pytest.approx([0.1, 0.2])
    assert torch.equal(chol[0], torch.diag(spread[0, 0])) and torch.equal(chol[1], dense[1])
    assert torch.equal(sp[1], spread[1] * 2)


def test_adaptive_ladder_with_a_kernel_object_runs_a_pilot(generator):
    q, truth = _gaussian_10d()
    kernel = eb.samplers.MALA(0.02)
    est = AIS(256, 60, base="gaussian", num_runs=32, kernel=kernel, num_steps=2,
              schedule="adaptive").log_partition(q, generator=generator)
    assert abs(est.value.item() - truth) < 4 * est.stderr.item()
    assert AIS(kernel=kernel).schedule == "sigmoid"  # the default with a kernel object
    assert AIS().schedule == "adaptive"
