"""Latent sets: Grid (periodic spacing, quadrature), Discrete, MonteCarlo, Minimize."""

import math

import pytest
import torch

import ebmlab as eb


def test_periodic_grid_is_k_pi_over_24():
    grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
    k = torch.arange(48, dtype=torch.float64)
    assert grid.z_shape == (1,) and grid.size == 48
    torch.testing.assert_close(grid.points()[:, 0], k * math.pi / 24, rtol=0, atol=1e-14)
    # periodic trapezoid weights: 2π/48 each, summing to the period
    w = grid.log_weights("integral").exp()
    torch.testing.assert_close(w, torch.full((48,), math.pi / 24), rtol=1e-14, atol=0)


def test_nonperiodic_grid_includes_both_ends_with_trapezoid_weights():
    grid = eb.latent.Grid([-1.0, 0.0], [1.0, 3.0], [5, 4])
    pts = grid.points()
    assert pts.shape == (20, 2) and grid.z_shape == (2,)
    assert pts[:, 0].min() == -1.0 and pts[:, 0].max() == 1.0
    assert pts[:, 1].min() == 0.0 and pts[:, 1].max() == 3.0
    w = grid.log_weights("integral").exp()
    # trapezoid weights integrate constants exactly: the sum is the box's volume 2 * 3
    assert abs(float(w.sum()) - 6.0) < 1e-12
    # and linear functions exactly: ∫∫ z1 + z2 = 0 * 3 + 2 * 4.5
    assert abs(float((w * pts.sum(-1)).sum()) - 9.0) < 1e-12
    mean = grid.log_weights("mean").exp()
    torch.testing.assert_close(mean, torch.full((20,), 1 / 20))


def test_grid_points_follow_requested_dtype():
    grid = eb.latent.Grid(0.0, 1.0, 3)
    assert grid.points(dtype=torch.float32).dtype == torch.float32
    assert grid.log_weights("integral", dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"low": 0.0, "high": 1.0, "num": 0}, "empty grid"),
        ({"low": 0.0, "high": 1.0, "num": 0, "periodic": True}, "empty grid"),
        ({"low": 0.0, "high": 1.0, "num": 1}, "num must be >= 2"),
        ({"low": 1.0, "high": 1.0, "num": 4}, "high > low"),
        ({"low": 0.0, "high": float("nan"), "num": 4}, "finite"),
        ({"low": [0.0, 0.0], "high": [1.0, 1.0, 1.0], "num": 4}, "same length"),
        ({"low": [0.0, 0.0], "high": 1.0, "num": [3]}, "2 entries"),
        ({"low": [], "high": [], "num": 3}, "at least one"),
    ],
)
def test_grid_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        eb.latent.Grid(**kwargs)


def test_discrete_set_and_its_errors():
    values = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    d = eb.latent.Discrete(values, weights=torch.tensor([1.0, 2.0, 4.0]))
    assert d.z_shape == (2,) and d.size == 3
    torch.testing.assert_close(d.log_weights("integral").exp(), torch.tensor([1.0, 2.0, 4.0]))
    assert eb.latent.Discrete(torch.arange(4.0)).z_shape == (1,)
    with pytest.raises(ValueError, match="empty"):
        eb.latent.Discrete(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="weights must have shape"):
        eb.latent.Discrete(values, weights=torch.ones(2))
    with pytest.raises(ValueError, match="> 0"):
        eb.latent.Discrete(values, weights=torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(TypeError, match="values"):
        eb.latent.Discrete([0.0, 1.0])


def test_monte_carlo_is_reproducible_and_resamples():
    def sampler(n, generator):
        return torch.randn(n, 2, generator=generator)

    a = eb.latent.MonteCarlo(sampler, 50, generator=torch.Generator().manual_seed(3))
    b = eb.latent.MonteCarlo(sampler, 50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.points(), b.points())
    assert torch.equal(a.points(), a.points())  # held fixed between calls
    first = a.points().clone()
    a.resample()
    assert not torch.equal(first, a.points())
    assert a.z_shape == (2,)
    with pytest.raises(ValueError, match="num = 50"):
        eb.latent.MonteCarlo(lambda n, g: torch.zeros(3, 1), 50).points()
    with pytest.raises(TypeError, match="sampler"):
        eb.latent.MonteCarlo(3.0, 10)


def test_monte_carlo_draws_a_distribution_under_a_fork_seeded_from_its_generator():
    normal = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    before = torch.random.get_rng_state()
    mc = eb.latent.MonteCarlo(normal, 20, generator=torch.Generator().manual_seed(5))
    z = mc.points()
    assert torch.equal(torch.random.get_rng_state(), before)  # the global state is restored
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(5)))
    torch.manual_seed(seed)
    assert torch.equal(z, normal.sample((20,)))  # the rule of ebmlab._random, draw for draw
    log_q = normal.log_prob(z).sum(-1)
    torch.testing.assert_close(mc.log_weights("integral"), -math.log(20) - log_q)


def test_monte_carlo_importance_weights_estimate_an_integral(generator):
    # ∫ exp(-z²/2) dz = √(2π), estimated with z ~ q = N(0, 2²): weights exp(-z²/2) / q(z) / N.
    # The estimator's sd is sd_q(exp(-z²/2)/q) / √N; 5 sd bounds a failure rate below 1e-6.
    q = torch.distributions.Normal(torch.tensor(0.0), torch.tensor(2.0))
    mc = eb.latent.MonteCarlo(q, 20000, generator=generator)
    z = mc.points()[:, 0]
    terms = torch.exp(-0.5 * z**2) * mc.log_weights("integral").exp()
    estimate = float(terms.sum())
    sd = float((terms * mc.num).std() / math.sqrt(mc.num))
    assert abs(estimate - math.sqrt(2 * math.pi)) < 5 * sd
    # same draw from the same generator seed
    again = eb.latent.MonteCarlo(q, 20000, generator=torch.Generator().manual_seed(1234))
    assert torch.equal(again.points(), mc.points())


def test_minimize_agrees_with_a_fine_grid(generator):
    ellipse = eb.energies.Ellipse()
    y = 3 * torch.rand(16, 2, generator=generator) - 1.5
    exact = eb.FreeEnergy(ellipse, eb.latent.Minimize((1,), num_starts=8, generator=generator))
    # A periodic grid of step h misses the minimum by at most max|∂²E/∂z²| h² / 8, with
    # ∂²E/∂z² ≤ 2(‖w‖² + ‖y‖‖w‖) ≤ 2 (6.25 + 2.2 * 2.5) < 24: 24 (2π/20000)² / 8 < 3e-7.
    fine = eb.FreeEnergy(ellipse, eb.latent.Grid(0.0, 2 * math.pi, 20000, periodic=True))
    with torch.no_grad():
        f_min, f_grid = exact(y), fine(y)
    assert (f_min <= f_grid + 1e-10).all()
    assert (f_grid - f_min).max() < 3e-7
    z = exact.argmin_z(y)
    torch.testing.assert_close(ellipse(y, z), f_min)


def test_minimize_rejects_bad_input():
    with pytest.raises(ValueError, match="domain has shape"):
        eb.latent.Minimize((1,), domain=eb.Box([0.0, 0.0], [1.0, 1.0]))
    with pytest.raises(ValueError, match="num_starts"):
        eb.latent.Minimize((1,), num_starts=0)
