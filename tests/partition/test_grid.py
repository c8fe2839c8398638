"""Grid quadrature of log Z against closed forms (tight), its chunking, batches and errors."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab.partition import Grid

# A correlated 2-D quadratic: log Z = (d/2) log(2 pi / beta) - 1/2 log det A.
A2 = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)


def quadratic(a: torch.Tensor, mean: list[float] | None = None) -> eb.energies.Quadratic:
    return eb.energies.Quadratic(a.to(torch.get_default_dtype()), mean=mean)


def closed_form(a: torch.Tensor, beta: float) -> float:
    d = a.shape[0]
    logdet = torch.linalg.slogdet(a.to(torch.float64))[1]
    return 0.5 * d * math.log(2 * math.pi / beta) - 0.5 * float(logdet)


@pytest.mark.parametrize(
    ("a", "beta", "num"),
    [
        (torch.tensor([[3.0]]), 1.0, 2048),
        (A2, 1.0, 256),
        (A2, 2.5, 256),
        (torch.diag(torch.tensor([1.0, 2.0, 4.0])), 1.0, 64),
    ],
)
def test_grid_matches_closed_form(a, beta, num):
    # The box holds > 8 sd of every coordinate, so the truncated mass is < 1e-14, and the
    # cells are at most 0.5 sd wide, so the midpoint rule errs by ~2 exp(-2 pi^2 4) ~ 1e-34
    # (Poisson summation; see Grid's docstring): a 1e-9 tolerance leaves room for rounding.
    d = a.shape[0]
    box = eb.Box([-8.0] * d, [8.0] * d)
    est = Grid(num=num).log_partition(quadratic(a), beta=beta, domain=box)
    assert est.value.shape == ()
    # stderr is now Richardson's error estimate: tiny here (the coarse grid is exact too,
    # up to rounding).
    assert est.stderr.item() < 1e-8 and est.ess is None
    assert est.value.item() == pytest.approx(closed_form(a, beta), abs=1e-9)


def test_grid_gaussian_mixture_is_normalised():
    # GaussianMixture is an exact -log density: log Z = 0 up to the mass outside [-4, 4]^2
    # (components at radius 2 with sd 0.2: 10 sd from the edge) and cells of 0.2 sd.
    gm = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.2)
    est = Grid(num=256).log_partition(gm, domain=eb.Box([-4.0, -4.0], [4.0, 4.0]))
    assert est.value.item() == pytest.approx(0.0, abs=1e-9)


def test_grid_chunking_does_not_change_the_result():
    # Streaming log-sum-exp and Chan's merge are exact reorganisations: rounding only.
    box = eb.Box([-5.0, -5.0], [5.0, 5.0])
    energy = eb.energies.DoubleWell(2)
    big = Grid(num=64).statistics(energy, beta=1.3, domain=box)
    small = Grid(num=64, chunk_size=97).statistics(energy, beta=1.3, domain=box)
    assert small.chunk_log_mass.shape[1] == math.ceil(64 * 64 / 97)
    for name in ("log_partition", "mean", "variance", "mean_energy"):
        torch.testing.assert_close(getattr(small, name), getattr(big, name), atol=1e-12, rtol=0)


def test_grid_discretisation_error_is_as_documented():
    # Poisson summation: the midpoint sum of a Gaussian (sd sigma) with a cell centre on the
    # mode is Z (1 + 2 sum_m exp(-2 pi^2 m^2 sigma^2 / h^2)) exactly (up to the truncation
    # at 31 sd, ~1e-200). At h = 2 sigma the error is 1.4 %, as Grid's docstring says.
    sigma, h = 1.0, 2.0
    box = eb.Box(-31 * h / 2, 31 * h / 2)
    est = Grid(num=31).log_partition(quadratic(torch.tensor([[1.0 / sigma**2]])), domain=box)
    aliases = sum(math.exp(-2 * math.pi**2 * m**2 * sigma**2 / h**2) for m in range(1, 6))
    error = est.value.item() - closed_form(torch.tensor([[1.0]]), 1.0)
    assert error == pytest.approx(math.log1p(2 * aliases), rel=1e-9)
    assert 0.0140 < error < 0.0145


def test_grid_batches_agree_with_one_at_a_time():
    energy = eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1) * (1 + x[:, 0] ** 2))
    x = torch.tensor([[0.0, 0.5], [1.0, -1.0], [-0.5, 0.25]])
    box = eb.Box([-3.0, -3.0], [3.0, 3.0])
    grid = Grid(num=64, chunk_size=1000)
    batch = grid.log_partition(energy, x, beta=0.7, domain=box).value
    single = torch.stack(
        [grid.log_partition(energy, x[i : i + 1], beta=0.7, domain=box).value[0] for i in range(3)]
    )
    torch.testing.assert_close(batch, single, atol=1e-12, rtol=0)


def test_grid_follows_the_input_dtype():
    energy = eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1))
    x = torch.zeros(2, 1, dtype=torch.float32)
    est = Grid(num=128).log_partition(energy, x, domain=eb.Box(-6.0, 6.0))
    assert est.value.dtype == torch.float32
    assert est.value.tolist() == pytest.approx([0.5 * math.log(math.pi)] * 2, abs=1e-5)


def test_grid_errors():
    q = quadratic(A2)
    box = eb.Box([-1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="dimension <= 3"):
        Grid().log_partition(eb.energies.DoubleWell(4), domain=eb.Box([-1.0] * 4, [1.0] * 4))
    with pytest.raises(ValueError, match="beta"):
        Grid().log_partition(q, beta=0.0, domain=box)
    with pytest.raises(ValueError, match="domain has shape"):
        Grid().log_partition(q, domain=eb.Box(-1.0, 1.0))
    with pytest.raises(TypeError, match="domain must be an ebmlab.Box"):
        Grid().log_partition(q, domain=(-1.0, 1.0))


def test_infinite_energy_everywhere_is_not_normalisable():
    energy = eb.FunctionEnergy(lambda y, x: torch.full((y.shape[0],), math.inf))
    with pytest.raises(ValueError, match="not normalisable"):
        Grid(num=8).log_partition(energy, domain=eb.Box(-1.0, 1.0))


@pytest.mark.parametrize("sd, num", [(0.05, 16), (0.05, 24), (0.02, 32)])
def test_grid_error_estimate_covers_the_true_error_on_sharp_energies(sd, num):
    # A sharp well (sd below a cell width of 0.125 or 0.083) on [-1, 1]: the midpoint rule is
    # far off, and Richardson's estimate |L_h - L_2h| / 3 covers the true error (here the
    # coarse grid errs more than the fine one, so it over-states it). Deterministic.
    box = eb.Box([-1.0], [1.0])
    energy = quadratic(torch.tensor([[1.0 / sd**2]]))
    est = Grid(num=num).log_partition(energy, domain=box)
    truth = closed_form(torch.tensor([[1.0 / sd**2]]), 1.0)
    assert abs(est.value.item() - truth) <= est.stderr.item()
    assert est.stderr.item() > 1e-4  # the estimate says the grid is too coarse


def test_grid_error_estimate_shrinks_four_times_per_doubling():
    # F = a y on [0, 1] leaves mass at the faces, so the O(h^2) term is there: the error
    # estimate matches the true error and falls 4x (to 1 %) when num doubles.
    a = 3.0
    energy = eb.FunctionEnergy(lambda y, x: a * y[:, 0], y_shape=(1,))
    truth = math.log((1 - math.exp(-a)) / a)
    box = eb.Box([0.0], [1.0])
    errors = []
    for num in (16, 32, 64):
        est = Grid(num=num).log_partition(energy, domain=box)
        assert est.stderr.item() == pytest.approx(abs(est.value.item() - truth), rel=0.05)
        errors.append(est.stderr.item())
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert coarse / fine == pytest.approx(4.0, rel=0.01)
