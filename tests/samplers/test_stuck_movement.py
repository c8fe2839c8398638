"""Chains that accept their moves but do not move are flagged stuck (movement, not acceptance).

Failure budget: a healthy chain's variance over time next to the median chain's is a ratio of
two variance estimates with ~100 effective samples each (2-D Gaussian, MALA h = 0.5, 300
steps; iid draws in the unit test), so a ratio below 0.01 has probability < 1e-30 per chain;
the frozen chains (step 1e-6: displacement ~0.02 over the run) have ratios ~1e-4, flagged
with certainty. Total < 1e-6. Seeds: the ``generator`` fixture (EBMLAB_TEST_SEED).
"""

from __future__ import annotations

import warnings

import torch

import ebmlab as eb


def test_stuck_chains_flags_a_frozen_chain_and_no_healthy_one(generator):
    x = torch.randn(300, 16, 5, generator=generator)
    assert not bool(eb.diagnostics.stuck_chains(x).any())
    x[:, 3] = 0.7 + 1e-3 * x[:, 3]  # chain 3 frozen near 0.7
    assert eb.diagnostics.stuck_chains(x).nonzero().flatten().tolist() == [3]
    spread = eb.diagnostics.relative_spread(x.var(0))
    assert float(spread[3]) < 1e-4 and bool((spread[torch.arange(16) != 3] > 0.3).all())


def _run(step: torch.Tensor, generator: torch.Generator) -> tuple[eb.samplers.Chain, list]:
    energy = eb.energies.Quadratic(torch.eye(2))
    y0 = torch.randn(step.shape[0], 2, generator=generator)
    kernel = eb.samplers.MALA(0.5).with_step_size(step.reshape(-1, 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chain = eb.sample(energy, y0, kernel, 300, generator=generator)
    return chain, [w for w in caught if issubclass(w.category, eb.SamplerWarning)]


def test_accepting_but_frozen_chains_are_named_in_the_warning(generator):
    step = torch.full((32,), 0.5)
    step[[4, 9, 17]] = 1e-6  # tiny steps: always accepted, the chains go nowhere
    chain, caught = _run(step, generator)
    assert float(chain.info.acceptance_rate[:, [4, 9, 17]].mean()) > 0.99  # acceptance looks fine
    assert chain.stuck_chains().tolist() == [4, 9, 17]
    assert chain.summary()["num_stuck_sampling"] == 3.0
    assert len(caught) == 1 and "chains 4, 9, 17" in str(caught[0].message)


def test_a_healthy_run_flags_no_chain(generator):
    chain, caught = _run(torch.full((32,), 0.5), generator)
    assert chain.stuck_chains().numel() == 0
    assert not any("barely moved" in str(w.message) for w in caught)
