"""eb.Gibbs: normalisation, moments, exact grid sampling, batches, estimators and errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import ebmlab as eb
from ebmlab.partition import AIS, Grid, Importance

A2 = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
BOX2 = ([-8.0, -8.0], [8.0, 8.0])


def conditional() -> eb.FunctionEnergy:
    """A conditional, non-Gaussian energy: a well at x whose width depends on x."""
    return eb.FunctionEnergy(
        lambda y, x: ((y - x) ** 2).sum(-1) * (1 + x[:, 0] ** 2) + 0.3 * (y**4).sum(-1),
        y_shape=(2,),
    )


def test_distribution_shapes():
    p = eb.Gibbs(eb.energies.DoubleWell(2), domain=eb.Box([-2.0, -2.0], [2.0, 2.0]))
    assert p.batch_shape == () and p.event_shape == (2,)
    y = p.sample((4, 5), generator=torch.Generator().manual_seed(0))
    assert y.shape == (4, 5, 2) and p.log_prob(y).shape == (4, 5)
    assert p.log_partition().value.shape == () and p.mean.shape == (2,)
    x = torch.zeros(3, 2)
    pc = eb.Gibbs(conditional(), x, domain=eb.Box([-3.0, -3.0], [3.0, 3.0]))
    assert pc.batch_shape == (3,) and pc.event_shape == (2,)
    y = pc.sample((4,), generator=torch.Generator().manual_seed(0))
    assert y.shape == (4, 3, 2) and pc.log_prob(y).shape == (4, 3)
    assert pc.log_prob(torch.zeros(2)).shape == (3,)  # broadcasts over the batch
    assert pc.mean.shape == (3, 2) and pc.variance.shape == (3, 2)
    assert pc.entropy().shape == (3,) and pc.log_partition().value.shape == (3,)
    assert bool(p.support.check(y[0]).all())


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_log_prob_integrates_to_one(beta):
    # Integrate exp(log_prob) on an independent, finer midpoint grid (401^2, misaligned with
    # Gibbs' 256^2): both quadratures are spectrally accurate for this smooth density, whose
    # mass at the box's faces is ~exp(-beta * 0.5 * 3^4) < 1e-8: tolerance 1e-6.
    energy = eb.energies.DoubleWell(2, scale=0.5)
    box = eb.Box([-2.5, -2.5], [2.5, 2.5])
    p = eb.Gibbs(energy, beta=beta, domain=box)
    grid = box.grid(401)
    total = p.log_prob(grid.points).exp().sum() * grid.cell_volume
    assert total.item() == pytest.approx(1.0, abs=1e-6)


def test_grid_moments_and_entropy_match_the_gaussian():
    # For F = 1/2 (y - mu)' A (y - mu): mean mu, covariance (beta A)^-1, entropy
    # d/2 log(2 pi e) + 1/2 log det Sigma. The box holds 16 sd: quadrature error ~1e-30.
    beta, mu = 1.7, [0.5, -0.3]
    p = eb.Gibbs(eb.energies.Quadratic(A2, mean=mu), beta=beta, domain=eb.Box(*BOX2))
    cov = torch.linalg.inv(beta * A2)
    torch.testing.assert_close(p.mean, torch.tensor(mu), atol=1e-10, rtol=0)
    torch.testing.assert_close(p.variance, cov.diagonal(), atol=1e-10, rtol=0)
    entropy = math.log(2 * math.pi * math.e) + 0.5 * float(torch.logdet(cov))
    assert p.entropy().item() == pytest.approx(entropy, abs=1e-9)


def test_cold_concentrates_on_the_minima_and_hot_is_flat():
    box = eb.Box(-2.0, 2.0)
    cold = eb.Gibbs(eb.energies.DoubleWell(1), beta=50.0, domain=box)
    hot = eb.Gibbs(eb.energies.DoubleWell(1), beta=1e-4, domain=box)
    # Cold: two Gaussian wells at +-1 of variance 1/(8 beta) (F'' = 8): E[y^2] ~ 1.
    assert cold.variance.item() == pytest.approx(1.0, abs=0.02)
    assert cold.log_prob(torch.tensor([[1.0]])) > cold.log_prob(torch.tensor([[0.0]])) + 40
    # Hot: uniform on [-2, 2], variance 16/12, entropy log 4 (to O(beta)).
    assert hot.variance.item() == pytest.approx(16 / 12, abs=1e-3)
    assert hot.entropy().item() == pytest.approx(math.log(4.0), abs=1e-3)


def test_grid_samples_pass_a_chi_square_test(generator):
    # 64 cells, 20,000 draws: the Pearson statistic is ~chi2_63; it exceeds the 0.999
    # quantile (103.4) with probability 0.1 %. Cell probabilities are recomputed here
    # independently of the sampler, from the energies at the cell centres.
    energy = eb.energies.DoubleWell(2, scale=0.7)
    box = eb.Box([-2.0, -1.5], [2.0, 1.5])
    p = eb.Gibbs(energy, beta=1.3, domain=box, estimator=Grid(num=8, chunk_size=16))
    n = 20_000
    y = p.sample((n,), generator=generator)
    grid = box.grid(8)
    logits = -1.3 * energy(grid.points)
    probs = torch.softmax(logits, 0)
    h = (box.high - box.low) / 8
    index = ((y - box.low) / h).floor().long().clamp(0, 7)
    counts = torch.bincount(index[:, 0] * 8 + index[:, 1], minlength=64).double()
    chi2 = ((counts - n * probs) ** 2 / (n * probs)).sum().item()
    assert chi2 < stats.chi2.ppf(0.999, 63)
    # Inside its cell a draw is uniform: the fractional position has mean 1/2 and variance
    # 1/12; |mean - 1/2| < 4 sqrt(1/12 / n) fails with probability 6e-5 per coordinate.
    frac = (y - box.low) / h - index
    assert ((frac.mean(0) - 0.5).abs() < 4 * math.sqrt(1 / 12 / n)).all()


def test_grid_sample_moments(generator):
    # The sampled density is piecewise constant: its variance is the quadrature variance
    # plus h^2/12. |mean - E y| < 4 sd / sqrt(n) fails with probability 6e-5 per coordinate.
    p = eb.Gibbs(eb.energies.Banana(scale=0.3), domain=eb.Box([-3.0, -2.0], [4.0, 9.0]))
    n = 20_000
    y = p.sample((n,), generator=generator)
    h = torch.tensor([7.0, 11.0]) / 256
    sd = (p.variance + h**2 / 12).sqrt()
    assert ((y.mean(0) - p.mean).abs() < 4 * sd / math.sqrt(n)).all()


def test_batches_agree_with_one_at_a_time():
    x = torch.tensor([[0.0, 0.5], [1.0, -1.0], [-0.5, 0.25]])
    box = eb.Box([-3.0, -3.0], [3.0, 3.0])
    batch = eb.Gibbs(conditional(), x, beta=0.8, domain=box, estimator=Grid(chunk_size=5000))
    y = 5.0 * torch.rand(7, 3, 2) - 2.5  # inside the box
    for i in range(3):
        one = eb.Gibbs(conditional(), x[i : i + 1], beta=0.8, domain=box)
        close = dict(atol=1e-11, rtol=0)
        torch.testing.assert_close(batch.log_partition().value[i], one.log_partition().value[0],
                                   **close)
        torch.testing.assert_close(batch.mean[i], one.mean[0], **close)
        torch.testing.assert_close(batch.variance[i], one.variance[0], **close)
        torch.testing.assert_close(batch.entropy()[i], one.entropy()[0], **close)
        torch.testing.assert_close(batch.log_prob(y)[:, i], one.log_prob(y[:, i : i + 1])[:, 0],
                                   **close)


def test_batched_samples_follow_their_own_input(generator):
    # Each input's draws have that input's mean: 4 sd / sqrt(n) per coordinate.
    x = torch.tensor([[-1.0, 0.0], [1.0, 1.0]])
    p = eb.Gibbs(conditional(), x, domain=eb.Box([-3.0, -3.0], [3.0, 3.0]))
    n = 10_000
    y = p.sample((n,), generator=generator)
    h = 6.0 / 256
    sd = (p.variance + h**2 / 12).sqrt()
    assert ((y.mean(0) - p.mean).abs() < 4 * sd / math.sqrt(n)).all()


def test_importance_gibbs_normalises_and_resamples(generator):
    # log Z within 3 stderr (0.27 %); the SIR sample mean within 5 sd / sqrt(min(n, ESS)):
    # resampling adds the multinomial noise to the weights' own, both ~ sd / sqrt(.).
    q = eb.energies.Quadratic(A2, mean=[0.5, -0.3])
    p = eb.Gibbs(q, domain=eb.Box([-6.0, -6.0], [6.0, 6.0]),
                 estimator=Importance(num_samples=20_000))
    est = p.log_partition(generator=generator)
    assert abs(est.value.item() - q.log_partition()) < 3 * est.stderr.item()
    assert p.log_partition() is est  # cached
    y = p.sample((4000,), generator=generator)
    sd = torch.linalg.inv(A2).diagonal().sqrt()
    tol = 5 * sd / math.sqrt(min(4000.0, est.ess.item()))
    assert ((y.mean(0) - torch.tensor([0.5, -0.3])).abs() < 2 * tol).all()
    with pytest.raises(NotImplementedError, match="grid"):
        _ = p.mean
    with pytest.raises(NotImplementedError, match="grid"):
        p.entropy()


@pytest.mark.parametrize("make", [lambda: Importance(2000),
                                  lambda: AIS(num_chains=32, num_temperatures=8)])
def test_gibbs_validates_once(make, monkeypatch):
    # Gibbs checks its arguments in __init__ and then calls the estimator's un-gated
    # computation: the public, validating entry points are not used.
    estimator = make()
    q = eb.energies.Quadratic(A2)
    box = eb.Box([-4.0, -4.0], [4.0, 4.0])
    expected = estimator.log_partition(q, domain=box, generator=torch.Generator().manual_seed(0))

    def refuse(*args, **kwargs):
        raise AssertionError("a validating entry point was called")

    monkeypatch.setattr(type(estimator), "log_partition", refuse)
    monkeypatch.setattr(type(estimator), "weighted_samples", refuse)
    p = eb.Gibbs(q, domain=box, estimator=estimator)
    est = p.log_partition(generator=torch.Generator().manual_seed(0))
    assert torch.equal(est.value, expected.value) and torch.equal(est.stderr, expected.stderr)
    assert p.sample((3,), generator=torch.Generator().manual_seed(1)).shape == (3, 2)


def test_any_sampling_estimator_is_accepted(generator):
    # An estimator of another package, following eb.partition.SamplingEstimator, is called
    # through its public methods.
    class Wrapped:
        def __init__(self):
            self.inner = Importance(2000)

        def log_partition(self, energy, x=None, *, beta=1.0, domain=None, generator=None):
            return self.inner.log_partition(energy, x, beta=beta, domain=domain,
                                            generator=generator)

        def weighted_samples(self, energy, x=None, *, beta=1.0, domain=None, generator=None):
            return self.inner.weighted_samples(energy, x, beta=beta, domain=domain,
                                               generator=generator)

    assert isinstance(Wrapped(), eb.partition.SamplingEstimator)
    q = eb.energies.Quadratic(A2)
    box = eb.Box([-4.0, -4.0], [4.0, 4.0])
    mine = eb.Gibbs(q, domain=box, estimator=Wrapped())
    ours = eb.Gibbs(q, domain=box, estimator=Importance(2000))
    a = mine.log_partition(generator=torch.Generator().manual_seed(0))
    b = ours.log_partition(generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.value, b.value)
    assert mine.sample((4,), generator=generator).shape == (4, 2)


def test_ais_gibbs_in_ten_dimensions(generator):
    # Grids stop at 3-D; AIS carries the Gibbs distribution to 10-D.
    a = 4.0 * torch.eye(10)
    q = eb.energies.Quadratic(a)
    p = eb.Gibbs(q, domain=eb.Box([-4.0] * 10, [4.0] * 10),
                 estimator=AIS(num_chains=64, num_temperatures=40, base="gaussian",
                               num_steps=2, num_runs=16))
    est = p.log_partition(generator=generator)
    assert abs(est.value.item() - q.log_partition()) < 3.5 * est.stderr.item()
    assert p.sample((10,), generator=generator).shape == (10, 10)


def test_log_prob_is_differentiable_in_y_and_the_parameters():
    q = eb.energies.Quadratic(A2)
    p = eb.Gibbs(q, domain=eb.Box(*BOX2))
    y = torch.tensor([[0.3, -0.2]], requires_grad=True)
    p.log_prob(y).sum().backward()
    torch.testing.assert_close(y.grad, -(y.detach() @ A2))  # d/dy of -F
    assert q.precision.grad is not None


def test_dtype_follows_the_input():
    x = torch.zeros(2, 2, dtype=torch.float32)
    p = eb.Gibbs(conditional(), x, domain=eb.Box([-3.0, -3.0], [3.0, 3.0]))
    assert p.log_partition().value.dtype == torch.float32
    assert p.sample((3,)).dtype == torch.float32


def test_outside_the_box():
    p = eb.Gibbs(eb.energies.DoubleWell(1), domain=eb.Box(-2.0, 2.0))
    with pytest.raises(ValueError, match="support"):
        p.log_prob(torch.tensor([[3.0]]))
    loose = eb.Gibbs(eb.energies.DoubleWell(1), domain=eb.Box(-2.0, 2.0), validate_args=False)
    assert loose.log_prob(torch.tensor([[3.0]])).item() == -math.inf


def test_marginal_of_the_joint_is_the_free_energy_distribution():
    # P(y) from eb.FreeEnergy(E, z-grid, beta, "integral") equals the y-marginal of the
    # joint P(y, z) computed on a 2-D grid. Both integrals over z are spectrally accurate
    # here (smooth integrand, negligible at z = +-3), so they agree to ~1e-8.
    if not hasattr(eb, "FreeEnergy") or not hasattr(eb, "latent"):
        pytest.skip("eb.FreeEnergy / eb.latent (issue 3) are not available")

    class Wiggle(eb.LatentEnergy):
        y_shape = (1,)
        z_shape = (1,)

        def forward(self, y, z, x=None):
            return (2.0 * (y - torch.sin(2 * z)) ** 2 + 0.5 * z**2).sum(-1)

    beta = 1.5
    e = Wiggle()
    free = eb.FreeEnergy(e, eb.latent.Grid(-6.0, 6.0, 801), beta=beta, reduction="integral")
    marginal = eb.Gibbs(free, beta=beta, domain=eb.Box(-3.0, 3.0), estimator=Grid(num=400))
    joint_energy = eb.FunctionEnergy(lambda yz, x: e(yz[:, :1], yz[:, 1:]), y_shape=(2,))
    joint = eb.Gibbs(joint_energy, beta=beta, domain=eb.Box([-3.0, -6.0], [3.0, 6.0]),
                     estimator=Grid(num=(400, 800)))
    y = torch.linspace(-2.5, 2.5, 11).reshape(-1, 1)
    z = torch.linspace(-6.0, 6.0, 801)[:-1] + 6.0 / 800  # 800 cell centres of [-6, 6]
    pairs = torch.cat([y.repeat_interleave(800, 0), z.repeat(11).reshape(-1, 1)], 1)
    log_joint = joint.log_prob(pairs).reshape(11, 800)
    log_marginal = torch.logsumexp(log_joint, 1) + math.log(12.0 / 800)
    torch.testing.assert_close(marginal.log_prob(y), log_marginal, atol=1e-6, rtol=0)


def test_errors():
    energy = eb.energies.DoubleWell(2)
    box = eb.Box([-2.0, -2.0], [2.0, 2.0])
    for beta in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="beta"):
            eb.Gibbs(energy, beta=beta, domain=box)
    with pytest.raises(TypeError, match="beta"):
        eb.Gibbs(energy, beta="hot", domain=box)
    with pytest.raises(TypeError, match="energy must be an ebmlab.Energy"):
        eb.Gibbs(lambda y, x: y.sum(-1), domain=box)
    with pytest.raises(TypeError, match="domain must be an ebmlab.Box"):
        eb.Gibbs(energy, domain=[-2.0, 2.0])
    with pytest.raises(ValueError, match="domain has shape"):
        eb.Gibbs(energy, domain=eb.Box(-2.0, 2.0))
    with pytest.raises(ValueError, match="dimension <= 3"):
        eb.Gibbs(eb.energies.DoubleWell(4), domain=eb.Box([-2.0] * 4, [2.0] * 4))
    with pytest.raises(ValueError, match="estimator must be one of"):
        eb.Gibbs(energy, domain=box, estimator="mcmc")
    with pytest.raises(TypeError, match="estimator must be"):
        eb.Gibbs(energy, domain=box, estimator=42)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        eb.Gibbs(conditional(), [[0.0, 0.0]], domain=box)
    p = eb.Gibbs(energy, domain=box)
    with pytest.raises(ValueError, match="event_shape"):
        p.log_prob(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="generator"):
        p.sample((2,), generator=1)
    with pytest.raises(ValueError, match="Box corners must be finite"):
        eb.Box([-math.inf, 0.0], [0.0, 1.0])


def test_non_finite_energies_are_reported():
    nan_energy = eb.FunctionEnergy(lambda y, x: torch.where(y[:, 0] > 1, math.nan, y[:, 0] ** 2))
    p = eb.Gibbs(nan_energy, domain=eb.Box(-2.0, 2.0))
    with pytest.raises(ValueError, match="non-finite"):
        p.log_partition()
    flat_inf = eb.FunctionEnergy(lambda y, x: torch.full((y.shape[0],), math.inf))
    with pytest.raises(ValueError, match="not normalisable"):
        eb.Gibbs(flat_inf, domain=eb.Box(-2.0, 2.0)).log_partition()


def test_three_dimensional_and_matrix_shaped_events(generator):
    # A 3-D box and a (2, 1)-shaped event: the grid works on the flattened coordinates.
    q3 = eb.energies.Quadratic(torch.diag(torch.tensor([1.0, 2.0, 4.0])))
    p3 = eb.Gibbs(q3, domain=eb.Box([-7.0] * 3, [7.0] * 3), estimator=Grid(num=48))
    assert p3.log_partition().value.item() == pytest.approx(q3.log_partition(), abs=1e-8)
    assert p3.sample((6,), generator=generator).shape == (6, 3)
    shaped = eb.FunctionEnergy(lambda y, x: (y**2).sum((-2, -1)), y_shape=(2, 1))
    box = eb.Box(torch.full((2, 1), -5.0), torch.full((2, 1), 5.0))
    p = eb.Gibbs(shaped, domain=box, estimator=Grid(num=128))
    assert p.event_shape == (2, 1) and p.mean.shape == (2, 1)
    assert p.log_partition().value.item() == pytest.approx(math.log(math.pi), abs=1e-8)
    y = p.sample((4,), generator=generator)
    assert y.shape == (4, 2, 1) and p.log_prob(y).shape == (4,)


def test_monte_carlo_estimators_follow_the_input_dtype(generator):
    energy = eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1), y_shape=(1,))
    x = torch.zeros(2, 1, dtype=torch.float32)
    box = eb.Box(-5.0, 5.0)
    for estimator in (Importance(500), AIS(32, 5)):
        p = eb.Gibbs(energy, x, domain=box, estimator=estimator)
        assert p.log_partition(generator=generator).value.dtype == torch.float32
        assert p.sample((3,), generator=generator).dtype == torch.float32


def test_gibbs_refuses_an_empty_batch_and_negative_sample_sizes():
    # Review F11: an empty x gave ZeroDivisionError, sample((-1,)) a RuntimeError.
    shift = eb.FunctionEnergy(lambda y, x: ((y - x) ** 2).sum(-1), y_shape=(2,))
    box = eb.Box([-1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="at least one input"):
        eb.Gibbs(shift, torch.zeros(0, 2), domain=box)
    p = eb.Gibbs(eb.energies.DoubleWell(1), domain=eb.Box(-2.0, 2.0))
    with pytest.raises(ValueError, match="sample_shape"):
        p.sample((-1,))


def test_gibbs_grid_log_partition_reports_the_discretisation_error():
    # The grid's stderr is passed through: Richardson's |L_h - L_2h| / 3 (eb.partition.Grid).
    p = eb.Gibbs(eb.energies.DoubleWell(1), beta=4.0, domain=eb.Box(-2.0, 2.0),
                 estimator=eb.partition.Grid(num=64))
    est = p.log_partition()
    direct = eb.partition.Grid(num=64).log_partition(eb.energies.DoubleWell(1), beta=4.0,
                                                      domain=eb.Box(-2.0, 2.0))
    torch.testing.assert_close(est.stderr, direct.stderr)
    assert est.stderr.item() > 0
