"""Log-partition estimators against closed forms: grid (tight), importance sampling and AIS."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

import ebmlab as eb
from ebmlab.partition import AIS, Estimate, Grid, Importance, RandomWalkMetropolis

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


# ---------------------------------------------------------------- grid


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
    assert est.stderr.item() == 0.0 and est.ess is None
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


# ---------------------------------------------------------------- importance sampling


def test_estimate_from_log_weights_matches_the_delta_method():
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    est = Estimate.from_log_weights(w.log() + 100.0)  # a shift far outside exp's range
    mean, sd = w.mean(), w.std()  # unbiased sd
    assert est.value.item() == pytest.approx(math.log(mean) + 100.0, abs=1e-12)
    assert est.stderr.item() == pytest.approx(float(sd / (2 * mean)), abs=1e-12)
    assert est.ess.item() == pytest.approx(float(w.sum() ** 2 / (w**2).sum()), abs=1e-12)


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


# ---------------------------------------------------------------- AIS


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


# ---------------------------------------------------------------- errors


def test_estimator_errors():
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
    with pytest.raises(ValueError, match="num_samples"):
        Importance(num_samples=1)
    with pytest.raises(ValueError, match="neither"):
        Importance().log_partition(q)
    with pytest.raises(ValueError, match="event_shape"):
        Importance(proposal=Normal(torch.zeros(2), torch.ones(2))).log_partition(q, domain=box)
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
    with pytest.raises(TypeError, match="generator"):
        Importance().log_partition(q, domain=box, generator=0)


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


def test_infinite_energy_everywhere_is_not_normalisable():
    energy = eb.FunctionEnergy(lambda y, x: torch.full((y.shape[0],), math.inf))
    with pytest.raises(ValueError, match="not normalisable"):
        Grid(num=8).log_partition(energy, domain=eb.Box(-1.0, 1.0))
