"""The particle environment: PD dynamics, visits in order, and an oracle that always succeeds."""

from __future__ import annotations

import pytest
import torch

from ebmlab.envs import Particle, ParticleOracle, rollout


def test_dynamics_match_the_euler_pd_update(generator):
    env = Particle(3, repeat=4)
    env.reset(generator=generator)
    p, v = env.position.clone(), env.velocity.clone()
    action = torch.rand(3, 2, generator=generator)
    for _ in range(4):
        u = 10.0 * (action - p) - 5.0 * v
        p, v = p + 0.005 * v, v + 0.005 * u
    obs, done = env.step(action)
    assert torch.allclose(env.position, p) and torch.allclose(env.velocity, v)
    assert torch.equal(obs[:, :2], env.position) and torch.equal(obs[:, 4:], env.goals.flatten(1))
    assert not done


def test_target_is_reached_and_held():
    env = Particle(1, num_steps=200)
    env.reset(generator=torch.Generator().manual_seed(0))
    target = torch.tensor([[0.3, 0.7]])
    for _ in range(200):
        env.step(target)
    # A damped PD loop (zeta = 0.79) settles on its set point: 10 s of simulated time.
    assert torch.allclose(env.position, target, atol=1e-6)
    assert float(env.velocity.abs().max()) < 1e-5


@pytest.mark.parametrize("seed", range(5))
def test_oracle_succeeds_on_every_seed(seed):
    env = Particle(200)
    result = rollout(env, ParticleOracle(env), generator=torch.Generator().manual_seed(seed))
    assert result.success_rate == 1.0
    assert result.observations.shape == (50, 200, 8)
    assert result.positions.shape == (51, 200, 2)


@pytest.mark.parametrize("seed", range(3))
def test_oracle_with_ibc_switch_radius_succeeds(seed):
    # IBC's oracle switches at 0.01 inside the 0.05 success tolerance.
    env = Particle(200)
    oracle = ParticleOracle(env, switch_radius=0.01)
    result = rollout(env, oracle, generator=torch.Generator().manual_seed(seed))
    assert result.success_rate == 1.0
    assert bool((env.closest_first < 0.01).all())
    # It aims at goal 1 for longer than the oracle that switches at the tolerance.
    default = rollout(env, ParticleOracle(env), generator=torch.Generator().manual_seed(seed))
    at_first = (result.actions == result.goals[None, :, 0]).all(-1).sum()
    assert int(at_first) > int((default.actions == default.goals[None, :, 0]).all(-1).sum())


def test_order_matters():
    env = Particle(50)
    # Going straight to goal 2 and staying there never visits goal 1 first.
    result = rollout(env, lambda obs: obs[:, 6:8], generator=torch.Generator().manual_seed(0))
    started_near_first = (result.positions[0] - result.goals[:, 0]).norm(dim=-1) < 0.05
    passes_first = ((result.positions - result.goals[:, 0]).norm(dim=-1) < 0.05).any(0)
    assert torch.equal(result.is_success, passes_first | started_near_first)
    assert result.success_rate < 0.5


def test_errors():
    env = Particle(2, num_steps=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(2, 2))
    env.reset()
    with pytest.raises(ValueError, match="action must have shape"):
        env.step(torch.zeros(3, 2))
    env.step(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="ended"):
        env.step(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="tolerance"):
        Particle(tolerance=0.0)
    with pytest.raises(TypeError, match="env"):
        ParticleOracle(object())
    with pytest.raises(ValueError, match="switch_radius"):
        ParticleOracle(env, switch_radius=0.0)
