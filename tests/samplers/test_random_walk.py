"""Random-walk Metropolis (AIS's default kernel): stationarity, walls, divergences, determinism."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab as eb
from ebmlab.samplers import RandomWalkMetropolis


def test_keeps_the_target_law(generator):
    # Start from exact draws of N(0, 1/(beta a)) and take 10 steps: the law must not move.
    # With n = 20,000 chains, |mean| < 4 sd / sqrt(n) and |var / sd^2 - 1| < 4 sqrt(2 / n)
    # (the sd of a normal sample variance) each fail with probability 6e-5.
    a, beta, n = 2.0, 1.5, 20_000
    sd = 1 / math.sqrt(beta * a)
    energy = eb.energies.Quadratic(torch.tensor([[a]]))
    kernel = RandomWalkMetropolis(1.0, beta=beta)
    state = kernel.init(sd * torch.randn(n, 1, generator=generator), energy)
    rates = []
    for _ in range(10):
        state, info = kernel.step(state, energy, generator=generator)
        rates.append(info.acceptance_rate.mean())
    y = state.position[:, 0]
    assert abs(y.mean().item()) < 4 * sd / math.sqrt(n)
    assert abs(y.var().item() / sd**2 - 1) < 4 * math.sqrt(2 / n)
    torch.testing.assert_close(state.energy, energy(state.position))  # cache is exact
    assert 0.2 < float(torch.stack(rates).mean()) < 0.9


def test_infinite_walls_are_never_crossed(generator):
    energy = eb.FunctionEnergy(
        lambda y, x: torch.where(y.abs().amax(-1) <= 1, (y**2).sum(-1), math.inf)
    )
    kernel = RandomWalkMetropolis(2.0)
    state = kernel.init(torch.zeros(500, 2), energy)
    for _ in range(20):
        state, info = kernel.step(state, energy, generator=generator)
    assert bool((state.position.abs() <= 1).all())
    assert not bool(info.is_divergent.any())


def test_nan_proposals_are_divergent_and_rejected(generator):
    energy = eb.FunctionEnergy(lambda y, x: torch.where(y[:, 0] > 0, math.nan, y[:, 0] ** 2))
    kernel = RandomWalkMetropolis(1.0)
    state = kernel.init(-torch.ones(1000, 1), energy)
    new, info = kernel.step(state, energy, generator=generator)
    assert bool(info.is_divergent.any())
    assert not bool(info.is_accepted[info.is_divergent].any())
    assert bool((info.acceptance_rate[info.is_divergent] == 0).all())
    assert bool(torch.isfinite(new.energy).all())


def test_per_chain_step_sizes_and_determinism():
    energy = eb.energies.Quadratic(torch.eye(2))
    step = torch.tensor([[0.0], [1.0]])  # chain 0 never moves
    kernel = RandomWalkMetropolis(step)
    runs = []
    for _ in range(2):
        state = kernel.init(torch.zeros(2, 2), energy)
        g = torch.Generator().manual_seed(7)
        for _ in range(5):
            state, _ = kernel.step(state, energy, generator=g)
        runs.append(state.position)
    assert runs[0].tolist() == runs[1].tolist()
    assert runs[0][0].tolist() == [0.0, 0.0]


def test_errors():
    with pytest.raises(ValueError, match="step_size"):
        RandomWalkMetropolis(0.0)
    with pytest.raises(ValueError, match="beta"):
        RandomWalkMetropolis(1.0, beta=-1.0)
    with pytest.raises(TypeError, match="step_size"):
        RandomWalkMetropolis(torch.tensor([1]))


def test_old_paths_still_import():
    # The kernel moved from ebmlab.partition to ebmlab.samplers; the old names stay.
    from ebmlab.partition import MetropolisInfo, MetropolisState

    assert eb.partition.RandomWalkMetropolis is RandomWalkMetropolis
    assert MetropolisState is eb.samplers.RandomWalkState
    assert MetropolisInfo is eb.samplers.Info


def test_runs_under_sample_with_a_named_tuple_info(generator):
    # The crash of the architecture review (4.1): eb.sample stacks the Info fields.
    energy = eb.energies.Quadratic(torch.eye(2))
    chain = eb.sample(energy, torch.zeros(4, 2), RandomWalkMetropolis(0.5), 10, burn_in=3,
                      thin=2, generator=generator)
    assert chain.samples.shape == (5, 4, 2)
    assert isinstance(chain.info, eb.samplers.Info)
    assert chain.info.acceptance_rate.shape == (5, 4)
    assert chain.step_size == 0.5
