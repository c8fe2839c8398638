"""Per-chain adaptation, mass windows, stuck chains, the SamplerWarning and eb.sample's gate.

Failure budget (two-sided, under the null that the code is right): the mass-matrix test
asserts 4 relative errors at 5 sd of a variance estimate (p ~ 6e-7 each) and the pooled
chains' spread at 3x its typical value; the different-inputs test 4 half-means at 6 sd and a
10x separation (p < 1e-8 each); the warning
tests use margins of > 10 sd (R-hat of iid chains is 1 + O(1/n), ESS of 4 x 500 iid
draws ~ 2000 against the limit of 100); the stuck-chain test is deterministic in
effect (a chain at energy 1e4 on a stiff well never accepts a shared step). Total < 1e-5.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import ebmlab as eb
from ebmlab.samplers.driver import _shared_if_mixed, mass_windows
from ebmlab.samplers.mass import Welford


def test_mass_windows_follow_stan():
    assert mass_windows(1000) == [100, 150, 250, 450, 950]
    assert mass_windows(150) == [100]
    assert mass_windows(149) == []


@pytest.mark.parametrize("name", ["hmc", "nuts", "mala"])
def test_adapted_mass_matches_the_marginal_variances(name, generator):
    # N(0, diag(s^2)) with s = (0.1, 3): M^{-1} = beta Var, pooled over 64 chains ("shared")
    # from the last window of 200 draws (burn-in 400: windows end at 100, 150, 350). Per
    # coordinate the estimate of s^2 from 64 x 200 draws of ESS >= ~25 per chain (1600 in
    # all) has relative sd sqrt(2 / 1600) = 3.5 %; 5 sd = 18 %, plus Stan's shrinkage
    # n/(n+5) (2.4 %): we accept 20 %.
    sd = torch.tensor([0.1, 3.0])
    energy = eb.energies.Quadratic(torch.diag(1.0 / sd**2))
    kernel = {"hmc": eb.samplers.HMC(0.1, 8), "nuts": eb.samplers.NUTS(0.1, max_tree_depth=5),
              "mala": eb.samplers.MALA(0.01)}[name]
    y0 = torch.randn(64, 2, generator=generator) * sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)
        chain = eb.sample(energy, y0, kernel, 10, burn_in=400, adapt="shared",
                          generator=generator)
    variance = 1.0 / chain.mass
    assert chain.mass.shape == (2,)
    assert bool(((variance / sd**2 - 1).abs() < 0.2).all()), variance
    # Per chain: one mass row per chain, partially pooled (every chain samples the same
    # target, so the chains' estimates are shrunk towards one): their mean tracks the
    # target, and they agree with each other. A chain's 200 draws of the last window have an
    # ESS of ~10 (MALA) to ~50 (NUTS), so its own variance is biased low by ~tau/n <= 10 %
    # and its log spreads by sqrt(2 / ESS) = 0.2-0.45 (measured); pooling in log space takes
    # exp(-sd^2 / 2) ~ 10 % more, Stan's n / (n + 5) 2.4 %: the mean lands at 0.75-0.95 of
    # the truth (measured on 7 seeds), +-5 % over 64 chains: we accept 35 %. The
    # positive-part weight 1 - noise / spread^2 stays below 0.7 unless the chains' spread
    # exceeds 3.3x the noise (> 7 sd with 64 chains on one target), so the pooled log
    # masses spread by < 0.7 x 0.45: we accept 0.35 (measured <= 0.21; typically 0).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)
        per = eb.sample(energy, y0, kernel, 10, burn_in=400, generator=generator)
    assert per.mass.shape == (64, 2) and per.step_sizes.shape == (64,)
    assert bool((((1.0 / per.mass).mean(0) / sd**2 - 1).abs() < 0.35).all())
    assert float(per.mass.log().std(0).max()) < 0.35, per.mass.log().std(0)


@pytest.mark.parametrize("name", ["hmc", "nuts", "mala"])
def test_chains_on_different_inputs_keep_their_own_mass(name, generator):
    # y | x ~ N(0, x^2 I): 32 chains at x = 0.1 and 32 at x = 3, so one pooled mass would be
    # wrong for both halves by 30x-900x; the spread across chains is far above the noise, so
    # the partial pooling keeps each chain's own. One chain's 200 draws of ESS >= ~25 give a
    # variance to a relative sd of sqrt(2 / 25) = 28 %, so each half's mean (32 chains) is
    # good to 5 %: we accept 30 % (6 sd), and a 10x separation between the halves.
    energy = eb.FunctionEnergy(lambda y, x: 0.5 * ((y / x) ** 2).sum(-1), y_shape=(2,),
                               x_shape=(1,))
    kernel = {"hmc": eb.samplers.HMC(0.1, 8), "nuts": eb.samplers.NUTS(0.1, max_tree_depth=5),
              "mala": eb.samplers.MALA(0.01)}[name]
    x = torch.cat([torch.full((32, 1), 0.1), torch.full((32, 1), 3.0)])
    y0 = torch.randn(64, 2, generator=generator) * x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)
        chain = eb.sample(energy, y0, kernel, 10, x=x, burn_in=400, generator=generator)
    assert chain.mass.shape == (64, 2)
    variance = 1.0 / chain.mass
    for half, s in ((variance[:32], 0.1), (variance[32:], 3.0)):
        assert bool(((half.mean(0) / s**2 - 1).abs() < 0.3).all()), half.mean(0)
    assert float(variance[:32].max()) * 10 < float(variance[32:].min())


def _window(means: torch.Tensor, sds: torch.Tensor, n: int = 50) -> Welford:
    # A Welford over n draws per chain with exactly these means and standard deviations.
    w = Welford(means)
    w.count, w.mean, w.m2 = n, means.clone(), sds.square() * (n - 1)
    return w


def test_steps_of_chains_that_mix_as_one_move_halfway_to_the_median():
    steps = torch.tensor([0.05, 0.1, 0.2, 0.1, 0.1, 0.4])
    healthy = torch.ones(6, dtype=torch.bool)
    ones = torch.ones(6, 2)
    # One target: equal means (B/W = 0) and scales: log steps halve their distance to log 0.1.
    mixed = _shared_if_mixed(steps, _window(torch.zeros(6, 2), ones), healthy, None)
    torch.testing.assert_close(mixed.log() - math.log(0.1), (steps.log() - math.log(0.1)) / 2)
    # A stuck chain (healthy False) does not move the median, and is moved like the others.
    sick = healthy.clone()
    sick[5] = False
    torch.testing.assert_close(_shared_if_mixed(steps, _window(torch.zeros(6, 2), ones), sick,
                                                None), mixed)
    # Separated means (B/W = 1.2 on coordinate 0): each keeps its own.
    apart = torch.zeros(6, 2)
    apart[:3, 0] = 2.0
    assert torch.equal(_shared_if_mixed(steps, _window(apart, ones), healthy, None), steps)
    # Scales 30x apart with no mass to absorb them: each keeps its own ...
    sds = torch.cat([torch.full((3, 2), 0.1), torch.full((3, 2), 3.0)])
    assert torch.equal(_shared_if_mixed(steps, _window(torch.zeros(6, 2), sds), healthy, None),
                       steps)
    # ... and with each chain's adapted mass (1 / variance) they are one target again.
    torch.testing.assert_close(
        _shared_if_mixed(steps, _window(torch.zeros(6, 2), sds), healthy, 1.0 / sds**2), mixed)


def test_chains_on_different_scales_without_mass_keep_their_own_steps(generator):
    # y | x ~ N(0, x^2): without mass adaptation the right step is ~30x smaller at x = 0.1
    # than at x = 3; sharing would leave one half rejecting everything or crawling. The
    # chains' log variances are two groups ln(900) = 6.8 apart (robust spread ~5 >> 1.5).
    energy = eb.FunctionEnergy(lambda y, x: 0.5 * ((y / x) ** 2).sum(-1), y_shape=(2,),
                               x_shape=(1,))
    x = torch.cat([torch.full((8, 1), 0.1), torch.full((8, 1), 3.0)])
    y0 = torch.randn(16, 2, generator=generator) * x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)
        chain = eb.sample(energy, y0, eb.samplers.NUTS(0.1, max_tree_depth=8), 10, x=x,
                          burn_in=300, adapt_mass="none", generator=generator)
    assert float(chain.step_sizes[:8].max()) * 10 < float(chain.step_sizes[8:].min())


def _stiff_energy() -> eb.Energy:
    # A funnel-like trap: a chain started at y = 30 sits where the curvature is 100x the
    # bulk's, so a step tuned on the others is rejected there every time.
    def fn(y, x):
        r2 = (y**2).sum(-1)
        return 0.5 * r2 * (1.0 + (r2 / 100.0) ** 2)

    return eb.FunctionEnergy(fn, y_shape=(2,))


def test_per_chain_adaptation_frees_a_chain_that_shared_adaptation_leaves_stuck(generator):
    energy = _stiff_energy()
    y0 = torch.randn(16, 2, generator=generator) * 0.5
    y0[0] = torch.tensor([30.0, 0.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shared = eb.sample(energy, y0, eb.samplers.MALA(0.3), 50, burn_in=100,
                           adapt="shared", adapt_mass="none", generator=generator)
    assert shared.num_stuck >= 1
    assert any(issubclass(w.category, eb.SamplerWarning) and "stuck" in str(w.message)
               for w in caught)
    per = eb.sample(energy, y0, eb.samplers.MALA(0.3), 50, burn_in=100,
                    generator=torch.Generator().manual_seed(1))
    assert per.num_stuck == 0
    assert float(per.samples[:, 0].abs().max()) < 10.0  # the trapped chain left y = 30


def test_stuck_chains_are_reinitialised_from_healthy_ones(generator):
    # Chain 0 starts at a point c of zero gradient ringed by NaN energies out to radius 100:
    # every proposal is divergent and rejected whatever the step, so it stays stuck through
    # burn-in; it is restarted from a healthy chain.
    c = torch.tensor([1000.0, 0.0])

    def fn(y, x):
        d = (y - c).norm(dim=-1)
        e = 0.5 * (y**2).sum(-1)
        return torch.where(d == 0, torch.zeros_like(e), torch.where(d < 100, torch.nan, e))

    energy = eb.FunctionEnergy(fn, y_shape=(2,))
    y0 = torch.randn(8, 2, generator=generator)
    y0[0] = c
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chain = eb.sample(energy, y0, eb.samplers.MALA(0.5), 20, burn_in=40,
                          generator=generator)
    assert chain.num_reinitialised == 1
    assert chain.summary()["num_reinitialised"] == 1
    assert float(chain.samples[:, 0, 0].abs().max()) < 10
    assert any("re-initialised" in str(w.message) for w in caught)


def test_a_healthy_run_is_silent(generator):
    energy = eb.energies.Quadratic(torch.eye(2))
    # 8 MALA chains x 2000 steps on N(0, I): ESS per split chain ~ 250, so R-hat - 1 has
    # sd ~ 0.002 (limit 1.01 is > 4 sd) and the bulk ESS (~4000) is 40x the limit.
    y0 = torch.randn(8, 2, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.SamplerWarning)
        chain = eb.sample(energy, y0, eb.samplers.MALA(0.5), 2000, burn_in=300,
                          generator=generator)
    s = chain.summary()
    assert s["r_hat_max"] < 1.01 and s["ess_bulk_min"] > 100 and s["num_divergent"] == 0


def test_a_troubled_run_warns_naming_each_figure(generator):
    # Two far-apart wells, 4 chains started in different ones, a short run: R-hat and ESS
    # are out of bounds, named in one warning with what to try.
    wells = eb.energies.GaussianMixture.ring(2, radius=5.0, scale=0.2)
    y0 = wells.means.detach().repeat(2, 1)
    with pytest.warns(eb.SamplerWarning) as record:
        eb.sample(wells, y0, eb.samplers.MALA(0.01), 50, generator=generator)
    assert len(record) == 1
    message = str(record[0].message)
    for figure in ("R-hat", "bulk ESS", "Try", "tempering"):
        assert figure in message, message
    # Chains that never move (every step divergent): divergences and an undefined R-hat.
    with pytest.warns(eb.SamplerWarning) as record:
        eb.sample(wells, y0, eb.samplers.HMC(2.0, 5, target_acceptance=None), 30,
                  generator=generator)
    message = str(record[0].message)
    assert "divergent" in message and "did not move" in message, message


def test_langevin_flags_an_exploding_step_size(generator):
    # Review F8: N(0, I) with h = 2.5 > 2 / L. Without a box |y| explodes; with one the
    # reflection hides it. Both are flagged now, and eb.sample warns.
    q = eb.energies.Quadratic(torch.eye(2))
    box = eb.Box([-4.0, -4.0], [4.0, 4.0])
    y0 = box.sample(64, generator=generator)
    for domain in (None, box):
        with pytest.warns(eb.SamplerWarning, match="divergent"):
            chain = eb.sample(q, y0, eb.samplers.Langevin(2.5, domain=domain), 60,
                              generator=generator)
        assert chain.summary()["num_divergent"] > 100
    # A stable step is not flagged, with or without the box.
    for domain in (None, box):
        chain = eb.sample(q, y0, eb.samplers.Langevin(0.05, domain=domain), 60,
                          generator=generator)
        assert chain.summary()["num_divergent"] == 0


def test_sample_refuses_empty_batches_bad_outputs_and_silent_casts():
    q = eb.energies.Quadratic(torch.eye(2))
    with pytest.raises(ValueError, match="at least one chain"):
        eb.sample(q, torch.zeros(0, 2), eb.samplers.MALA(0.1), 5)
    with pytest.raises(TypeError, match="returned float"):
        eb.sample(eb.FunctionEnergy(lambda y, x: 1.0, y_shape=(2,)), torch.zeros(4, 2),
                  eb.samplers.MALA(0.1), 5)
    with pytest.raises(ValueError, match=r"shape \(4, 1\)"):
        eb.sample(eb.FunctionEnergy(lambda y, x: (y**2).sum(-1, keepdim=True), y_shape=(2,)),
                  torch.zeros(4, 2), eb.samplers.HMC(0.1, 3), 5)
    with pytest.raises(TypeError, match="dtype"):
        eb.sample(eb.energies.Quadratic(torch.eye(2)).float(),
                  torch.zeros(4, 2, dtype=torch.float16), eb.samplers.MALA(0.1), 5)
    with pytest.raises(ValueError, match="adapt"):
        eb.sample(q, torch.zeros(4, 2), eb.samplers.MALA(0.1), 5, adapt="each")
    with pytest.raises(ValueError, match="adapt_mass"):
        eb.sample(q, torch.zeros(4, 2), eb.samplers.MALA(0.1), 5, adapt_mass="dense")
    chain = eb.sample(q, torch.zeros(4, 2), eb.samplers.MALA(0.1), 5)
    empty = type(chain)(chain.samples[:, :0], chain.energy[:, :0], chain.info, 0.1, chain.state)
    with pytest.raises(ValueError, match="at least one sample and one chain"):
        empty.summary()


def test_shared_adaptation_without_mass_is_the_previous_algorithm(generator):
    # adapt="shared", adapt_mass="none" is the earlier single dual-averaging loop: its step
    # size is a number and no mass is reported.
    q = eb.energies.Quadratic(torch.eye(2))
    chain = eb.sample(q, torch.zeros(8, 2), eb.samplers.MALA(0.5), 20, burn_in=200,
                      adapt="shared", adapt_mass="none", generator=generator)
    assert chain.step_sizes is None and chain.mass is None
    assert math.isfinite(chain.step_size) and chain.step_size != 0.5
