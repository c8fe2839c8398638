"""Diagnostics: ESS of AR(1) chains, rank-normalised R-hat and ESS against arviz, counts, errors."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb


def ar1(phi: float, steps: int, chains: int, generator: torch.Generator) -> torch.Tensor:
    # Stationary AR(1): x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t, unit marginal variance.
    noise = torch.randn(steps, chains, generator=generator)
    x = torch.empty(steps, chains)
    x[0] = noise[0]
    scale = math.sqrt(1.0 - phi * phi)
    for t in range(1, steps):
        x[t] = phi * x[t - 1] + scale * noise[t]
    return x


def test_ess_of_ar1_matches_theory(generator):
    # Integrated autocorrelation time of AR(1): tau = (1 + phi) / (1 - phi) = 3 for phi = 0.5,
    # so ESS = N / 3. With N = 4 x 5000 the estimator's relative sd is about
    # sqrt(2 (2M + 1) / n) with window M ~ 10 (Sokal 1997): ~0.09 / sqrt(2) per split chain
    # pooled over 8 -> ~3 %; we accept 15 % (5 sd).
    x = ar1(0.5, 5000, 4, generator)
    ess = float(eb.diagnostics.ess(x))
    assert abs(ess / (20_000 / 3.0) - 1.0) < 0.15, ess


def test_ess_of_independent_draws_is_the_sample_size(generator):
    x = torch.randn(2000, 4, 3, generator=generator)
    ess = eb.diagnostics.ess(x)
    assert ess.shape == (3,)
    assert bool(((ess / 8000 - 1).abs() < 0.15).all()), ess


def test_autocorrelation_of_ar1(generator):
    # rho_k = phi^k; the lag-k estimate has sd ~ sqrt((1 + phi^2) / (1 - phi^2) / n) ~ 0.016 at
    # n = 4 x 5000 pooled; we average over the 4 chains and accept 0.05 (> 3 sd).
    x = ar1(0.8, 5000, 4, generator)
    rho = eb.diagnostics.autocorrelation(x, max_lag=3).mean(1)
    torch.testing.assert_close(rho, torch.tensor([1.0, 0.8, 0.64, 0.512]), rtol=0, atol=0.05)


def test_r_hat_one_for_iid_and_large_for_shifted_chains(generator):
    iid = torch.randn(1000, 4, generator=generator)
    # For iid chains split R-hat - 1 is O(1/n); sd about 1/n ~ 0.002 at n = 500.
    assert abs(float(eb.diagnostics.r_hat(iid)) - 1.0) < 0.01
    shifted = iid + torch.tensor([0.0, 0.0, 5.0, 5.0])
    # Rank normalisation bounds R-hat (the z-scores are bounded): two chains 5 sd away give
    # ~1.7 rather than the classic split R-hat's ~2.8.
    assert float(eb.diagnostics.r_hat(shifted)) > 1.5


def test_counts_from_info():
    info = eb.samplers.Info(
        torch.tensor([[0.5, 1.0], [0.0, 1.0]]),
        torch.tensor([[True, True], [False, True]]),
        torch.tensor([[False, True], [False, True]]),
    )
    assert eb.diagnostics.acceptance_rate(info).tolist() == [0.25, 1.0]
    assert eb.diagnostics.num_divergent(info).tolist() == [0, 2]


def test_diagnostics_refuse_bad_input():
    with pytest.raises(TypeError, match="samples"):
        eb.diagnostics.ess([1.0, 2.0])
    with pytest.raises(ValueError, match="T >= 4"):
        eb.diagnostics.r_hat(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\(T, chains, ...\)"):
        eb.diagnostics.autocorrelation(torch.zeros(10))


def _arviz():
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import arviz
    except ImportError:  # pragma: no cover - arviz is in the dev extra
        pytest.skip("arviz is not installed (pip install -e .[dev]); the reference check needs it")
    return arviz


@pytest.mark.parametrize("steps, chains", [(4, 2), (7, 3), (200, 4), (333, 3)])
@pytest.mark.parametrize("kind", ["iid", "ar1", "wide", "ties"])
def test_diagnostics_match_arviz(steps, chains, kind, generator):
    # The same arrays through arviz (layout (chain, draw, *shape)) and ebmlab ((T, chains,
    # *shape)): rank-normalised R-hat, bulk/tail/mean ESS and the MCSE of the mean agree to
    # 1e-6 (relative; they agree to rounding). "ties" rounds the draws to integers (average
    # ranks), "wide" makes one chain 3x wider, "ar1" correlates the draws.
    az = _arviz()
    x = torch.randn(steps, chains, 3, generator=generator)
    if kind == "ar1":
        for t in range(1, steps):
            x[t] = 0.9 * x[t - 1] + 0.3 * x[t]
    elif kind == "wide":
        x[:, -1] *= 3.0
    elif kind == "ties":
        x = x.round()
    ds = az.convert_to_dataset(x.permute(1, 0, 2).numpy())
    reference = {
        "r_hat": az.rhat(ds, method="rank"),
        "ess_bulk": az.ess(ds, method="bulk"),
        "ess_tail": az.ess(ds, method="tail"),
        "ess_mean": az.ess(ds, method="mean"),
        "mcse": az.mcse(ds, method="mean"),
    }
    for name, ref in reference.items():
        expected = torch.as_tensor(ref["x"].values)
        ours = getattr(eb.diagnostics, name)(x)
        assert ours.shape == (3,)
        torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6, equal_nan=True,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_r_hat_sees_a_wider_chain_that_split_r_hat_misses(generator):
    # The case: equal means, one of 4 chains 3x wider. Classic split R-hat is ~1
    # (0.9995 in the report); the folded part of the rank-normalised R-hat is ~1.15.
    x = torch.randn(1000, 4, generator=generator) * torch.tensor([1.0, 1.0, 1.0, 3.0])
    assert float(eb.diagnostics.r_hat(x)) > 1.05
    assert torch.equal(eb.diagnostics.ess(x), eb.diagnostics.ess_bulk(x))


def test_mcse_of_iid_draws(generator):
    # MCSE of the mean of N iid N(0, 1) draws is 1 / sqrt(N) (ESS ~ N, sd ~ 1): within 10 %
    # (the ESS estimate's relative sd at N = 8000 is ~3 %).
    x = torch.randn(2000, 4, generator=generator)
    assert abs(float(eb.diagnostics.mcse(x)) * math.sqrt(8000) - 1.0) < 0.1


def test_diagnostics_refuse_zero_chains():
    with pytest.raises(ValueError, match="at least one chain"):
        eb.diagnostics.ess(torch.zeros(10, 0, 2))


def test_ksd_against_its_closed_form_on_gaussians(generator):
    # p = N(0, I_2) and samples from q = N(mu, I_2): the score difference is the constant
    # -mu, so KSD^2 = |mu|^2 E[k(x, x')] = |mu|^2 E[(1 + 2 chi2_2)^(-1/2)] (x - x' ~ N(0, 2I)).
    # The U-statistic over N = 1500 points has sd ~ 0.01 here (measured over seeds); we
    # accept 15 % of the value (> 5 sd) for mu = (0.7, 0), and 0.05 around 0 for exact draws.
    from scipy import integrate, stats

    q = eb.energies.Quadratic(torch.eye(2))
    mu = torch.tensor([0.7, 0.0])
    expected_k = integrate.quad(lambda u: (1 + 2 * u) ** -0.5 * stats.chi2(2).pdf(u), 0,
                                math.inf)[0]
    closed = float(mu.square().sum()) * expected_k
    exact = torch.randn(1500, 2, generator=generator)
    shifted = torch.randn(1500, 2, generator=generator) + mu
    assert abs(float(eb.diagnostics.ksd(exact, q))) < 0.05
    assert float(eb.diagnostics.ksd(shifted, q)) == pytest.approx(closed, rel=0.15)
    assert float(eb.diagnostics.ksd(shifted + mu, q)) > 2 * closed  # grows with the shift


def test_mmd_is_zero_for_one_law_and_positive_for_two(generator):
    a, b = torch.randn(500, 2, generator=generator), torch.randn(500, 2, generator=generator)
    assert abs(float(eb.diagnostics.mmd(a, b))) < 0.01
    assert float(eb.diagnostics.mmd(a, b + 0.5)) > 0.05


def test_a_nan_sample_gives_nan_diagnostics_for_its_coordinate_only(generator):
    # A NaN used to get a finite rank (and a plausible R-hat); now its coordinate reads NaN
    # and the other coordinate is untouched.
    x = torch.randn(40, 4, 2, generator=generator, dtype=torch.float64)
    clean_r_hat, clean_ess = eb.diagnostics.r_hat(x), eb.diagnostics.ess_bulk(x)
    x[7, 2, 0] = float("nan")
    r_hat, ess = eb.diagnostics.r_hat(x), eb.diagnostics.ess_bulk(x)
    assert torch.isnan(r_hat[0]) and torch.isnan(ess[0])
    assert r_hat[1] == clean_r_hat[1] and ess[1] == clean_ess[1]
