"""Stuck-chain re-initialisation on a curved target (Neal's funnel) under per-chain adaptation.

Failure budget: a chain deep in the funnel's neck (v = -300, where the curvature is
e^300 ~ 1e130) rejects every move of any step size dual averaging can reach in 200 steps,
so it is stuck with certainty; the healthy chains' acceptance over 200 sampling steps is
tuned to 0.57 with sd < 0.05, and we ask only > 0.01 (> 10 sd). Total < 1e-6. Seeds: the
``generator`` fixture (EBMLAB_TEST_SEED).
"""

from __future__ import annotations

import warnings

import torch

import ebmlab as eb


def _funnel() -> eb.Energy:
    # Neal's funnel in 2-D: v ~ N(0, 3^2), z | v ~ N(0, e^v).
    def energy(y, x):
        v, z = y[:, 0], y[:, 1]
        return v**2 / 18.0 + 0.5 * z**2 * torch.exp(-v) + 0.5 * v

    def grad(y, x):
        v, z = y[:, 0], y[:, 1]
        return torch.stack([v / 9.0 - 0.5 * z**2 * torch.exp(-v) + 0.5, z * torch.exp(-v)], -1)

    return eb.FunctionEnergy(energy, grad_fn=grad, y_shape=(2,))


def test_per_chain_adaptation_reinitialises_the_chains_stuck_in_the_funnels_neck(generator):
    energy = _funnel()
    y0 = torch.randn(32, 2, generator=generator) * 0.5
    y0[:3] = torch.tensor([-300.0, 1e-70])  # finite energy, gradient 1e60: no step fits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shared = eb.sample(energy, y0, eb.samplers.MALA(0.5), 200, burn_in=200,
                           adapt="shared", generator=generator)
    # Shared adaptation cannot move a chain: the three stay stuck, and the warning says so.
    assert shared.num_stuck >= 3 and shared.num_reinitialised == 0
    assert float(shared.samples[:, :3, 0].max()) == -300.0
    assert any(issubclass(w.category, eb.SamplerWarning) and "stuck" in str(w.message)
               for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eb.SamplerWarning)
        per = eb.sample(energy, y0, eb.samplers.MALA(0.5), 200, burn_in=200,
                        generator=generator)
    # Per chain: the three are found stuck at the end of burn-in and restarted from healthy
    # chains; after that no chain is stuck and none is left in the neck.
    assert per.num_reinitialised == 3 and per.num_stuck == 0
    per_chain_acceptance = per.info.acceptance_rate.mean(0)
    assert bool((per_chain_acceptance > 0.01).all()), per_chain_acceptance
    assert float(per.samples[..., 0].min()) > -50.0
    assert per.summary()["num_reinitialised"] == 3.0
