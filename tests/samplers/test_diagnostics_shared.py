"""The end-of-run checks from one sort: rank_diagnostics against the five functions, the
documented chain subset of Chain.summary, NaN handling of the tail ESS."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import ebmlab as eb
from ebmlab.samplers import ranks
from ebmlab.samplers.chain import SUMMARY_CHAINS

NAMES = ["r_hat", "ess_bulk", "ess_tail", "ess_mean", "mcse"]


@pytest.mark.parametrize("steps", [4, 7, 40, 151])
@pytest.mark.parametrize("kind", ["iid", "ties", "nan", "constant"])
def test_rank_diagnostics_equal_the_five_functions(steps, kind, generator):
    x = torch.randn(steps, 5, 3, generator=generator)
    if kind == "ties":
        x = (2 * x).round()
    elif kind == "nan":
        x[1, 2, 1] = math.nan
    elif kind == "constant":
        x[:, :, 2] = 0.5
    together = eb.diagnostics.rank_diagnostics(x)
    assert together.num_chains_used == 5
    for name in NAMES:
        torch.testing.assert_close(getattr(together, name), getattr(eb.diagnostics, name)(x),
                                   rtol=1e-12, atol=1e-12, equal_nan=True)


def test_ess_tail_is_nan_for_a_coordinate_with_a_nan_sample(generator):
    x = torch.randn(40, 4, 2, generator=generator, dtype=torch.float64)
    clean = eb.diagnostics.ess_tail(x)
    x[3, 1, 0] = math.nan
    tail = eb.diagnostics.ess_tail(x)
    assert torch.isnan(tail[0]) and tail[1] == clean[1]
    assert torch.isnan(eb.diagnostics.rank_diagnostics(x).ess_tail[0])


def test_folded_ranks_by_merge_equal_a_direct_sort(generator):
    y = (3 * torch.randn(2, 501, generator=generator, dtype=torch.float64)).round()
    ordered, order = ranks.sort_rows(y)
    median = ranks.median_of_sorted(ordered)
    folded, folded_order = ranks.folded_sort(ordered, order, median)
    direct = (y - median.unsqueeze(1)).abs()
    assert torch.equal(folded, direct.sort(1).values)
    assert torch.equal(direct.gather(1, folded_order), folded)
    assert torch.equal(ranks.average_ranks(folded, folded_order),
                       ranks.average_ranks(*ranks.sort_rows(direct)))


def test_max_chains_uses_an_evenly_spaced_subset_and_scales_the_ess(generator):
    x = torch.randn(20, 10, 2, generator=generator)
    sub = eb.diagnostics.rank_diagnostics(x, max_chains=4)
    keep = torch.arange(4) * 10 // 4  # chains 0, 2, 5, 7
    ref = eb.diagnostics.rank_diagnostics(x[:, keep])
    assert sub.num_chains_used == 4
    torch.testing.assert_close(sub.r_hat, ref.r_hat)
    for name in ["ess_bulk", "ess_tail", "ess_mean"]:
        torch.testing.assert_close(getattr(sub, name), getattr(ref, name) * 2.5)
    torch.testing.assert_close(sub.mcse, ref.mcse / math.sqrt(2.5))
    with pytest.raises(ValueError, match="max_chains"):
        eb.diagnostics.rank_diagnostics(x, max_chains=0)


def test_summary_computes_r_hat_and_ess_on_the_documented_subset(generator):
    energy = eb.energies.Quadratic(torch.eye(2))
    chains = SUMMARY_CHAINS + 300
    y0 = torch.randn(chains, 2, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)  # 12 steps: R-hat may be high
        chain = eb.sample(energy, y0, eb.samplers.MALA(0.5, target_acceptance=None), 12,
                          generator=generator)
    s = chain.summary()
    keep = torch.arange(SUMMARY_CHAINS) * chains // SUMMARY_CHAINS
    sub = chain.samples[:, keep]
    assert s["num_chains"] == chains
    assert s["r_hat_max"] == pytest.approx(float(eb.diagnostics.r_hat(sub).max()), rel=1e-12)
    scaled = float(eb.diagnostics.ess_bulk(sub).min()) * chains / SUMMARY_CHAINS
    assert s["ess_bulk_min"] == pytest.approx(scaled, rel=1e-12)


def test_summary_below_four_samples_reads_nan_and_the_run_does_not_warn(generator):
    energy = eb.energies.Quadratic(torch.eye(2))
    y0 = torch.randn(64, 2, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.SamplerWarning)
        chain = eb.sample(energy, y0, eb.samplers.MALA(0.5, target_acceptance=None), 3,
                          generator=generator)
    s = chain.summary()
    assert all(math.isnan(s[k]) for k in ["r_hat_max", "ess_bulk_min", "ess_tail_min"])


def test_rank_diagnostics_without_tail_keep_r_hat_and_bulk_ess(generator):
    x = torch.randn(30, 6, 2, generator=generator)
    full = eb.diagnostics.rank_diagnostics(x)
    lean = eb.diagnostics.rank_diagnostics(x, tail=False)
    torch.testing.assert_close(lean.r_hat, full.r_hat, rtol=0, atol=0)
    torch.testing.assert_close(lean.ess_bulk, full.ess_bulk, rtol=1e-12, atol=0)
    assert all(bool(torch.isnan(getattr(lean, k)).all()) for k in ["ess_tail", "ess_mean", "mcse"])
