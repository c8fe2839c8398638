"""Small environments with oracle demonstrators, batched in torch and fully offline."""

from ebmlab.envs.particle import Particle, ParticleOracle, rollout

__all__ = ["Particle", "ParticleOracle", "rollout"]
