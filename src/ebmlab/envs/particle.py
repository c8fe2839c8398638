r"""The 2-D particle task of implicit behavioural cloning: visit goal 1, then goal 2.

A point mass in the unit square is driven by a PD controller towards the *target position*
chosen by the policy (the action). The observation is the position, the velocity and both
goals, :math:`o = [p, v, g_1, g_2] \in \mathbb{R}^8`; nothing in it says whether goal 1 has
been visited, so the oracle's action jumps from :math:`g_1` to :math:`g_2` across the small
ball around :math:`g_1`: the discontinuity an MSE policy smooths over and an implicit policy
keeps. Re-implemented from the paper's description (section 4 and appendix) as a batched torch
environment, so a whole evaluation of many episodes is one tensor program per step.

Success uses one tolerance for every policy: the episode succeeds when the agent came within
``tolerance`` of goal 1, later within ``tolerance`` of goal 2, and ends within ``tolerance``
of goal 2. The oracle switches goal once the agent has come within its own
``switch_radius`` of goal 1: by default the same tolerance; IBC's oracle uses 0.01 inside
its 0.05 success radius (``goal_threshold`` against ``goal_distance``), which leaves a
learned policy room to switch a little early and still visit goal 1.

References:
    Florence et al., "Implicit Behavioral Cloning", CoRL 2021, arXiv:2109.00137
    (the particle environment; google-research/ibc#5 on the tolerances of its comparison).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive, check_positive_int

__all__ = ["Particle", "ParticleOracle", "rollout", "Rollout"]


class Particle:
    r"""A batch of particle episodes: PD-controlled point masses and two goals each.

    Every control step repeats the action for ``repeat`` Euler sub-steps of length ``dt``:
    :math:`u = k_p (a - p) - k_v v`, :math:`p \leftarrow p + v\,dt`,
    :math:`v \leftarrow v + u\,dt`. Start positions and goals are uniform in the unit square,
    the start velocity is 0; an episode lasts ``num_steps`` control steps.

    Args:
        num_envs: episodes simulated side by side.
        num_steps: control steps per episode.
        tolerance: the goal radius of success (and of the oracle's switch).
        dt: Euler sub-step length.
        repeat: sub-steps per control step.
        k_p, k_v: the PD controller's position and velocity gains.

    Attributes:
        observation_dim: 8. action_dim: 2.
        position, velocity, goals: the state, (num_envs, 2), (num_envs, 2), (num_envs, 2, 2).
        visited_first, visited_second: (num_envs,) bool, the visits within ``tolerance``.
        closest_first: (num_envs,), the smallest distance to goal 1 so far (every sub-step).

    Example:
        >>> import torch, ebmlab as eb
        >>> env = eb.envs.Particle(4)
        >>> obs = env.reset(generator=torch.Generator().manual_seed(0))
        >>> obs.shape, env.step(env.goals[:, 0])[0].shape
        (torch.Size([4, 8]), torch.Size([4, 8]))
    """

    observation_dim = 8
    action_dim = 2

    def __init__(
        self,
        num_envs: int = 1,
        *,
        num_steps: int = 50,
        tolerance: float = 0.05,
        dt: float = 0.005,
        repeat: int = 10,
        k_p: float = 10.0,
        k_v: float = 5.0,
    ) -> None:
        self.num_envs = check_positive_int(num_envs, "num_envs")
        self.num_steps = check_positive_int(num_steps, "num_steps")
        self.tolerance = check_positive(tolerance, "tolerance")
        self.dt = check_positive(dt, "dt")
        self.repeat = check_positive_int(repeat, "repeat")
        self.k_p = check_positive(k_p, "k_p")
        self.k_v = check_positive(k_v, "k_v")
        self.position = self.velocity = self.goals = None  # set by reset()
        self.steps = 0

    def __repr__(self) -> str:
        return (f"Particle(num_envs={self.num_envs}, num_steps={self.num_steps}, "
                f"tolerance={self.tolerance})")

    def reset(
        self,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Start new episodes; return the first observations (num_envs, 8)."""
        check_generator(generator)
        dt = dtype or torch.get_default_dtype()
        draw = torch.rand((self.num_envs, 3, 2), generator=generator, dtype=dt, device=device)
        self.position = draw[:, 0].clone()
        self.velocity = torch.zeros_like(self.position)
        self.goals = draw[:, 1:].clone()  # (num_envs, 2 goals, 2)
        self.steps = 0
        self.visited_first = self._near(0)
        self.visited_second = torch.zeros_like(self.visited_first)
        self.closest_first = self.distance(0)
        return self.observation()

    def observation(self) -> Tensor:
        """Return ``[position, velocity, goal 1, goal 2]``, shape (num_envs, 8)."""
        self._check_started()
        return torch.cat([self.position, self.velocity, self.goals.flatten(1)], dim=-1)

    def step(self, action: Tensor) -> tuple[Tensor, bool]:
        """Drive every agent towards its target ``action`` (num_envs, 2) for one control step.

        Returns:
            The next observations (num_envs, 8) and whether the episodes are over.

        Raises:
            ValueError: an action of the wrong shape, or a step after the end.
        """
        self._check_started()
        if tuple(action.shape) != (self.num_envs, 2):
            raise ValueError(
                f"action must have shape (num_envs, 2) = ({self.num_envs}, 2); got "
                f"{tuple(action.shape)}"
            )
        if self.steps >= self.num_steps:
            raise ValueError(f"the episodes ended after {self.num_steps} steps; call reset()")
        action = action.to(self.position.dtype)
        p, v = self.position, self.velocity
        for _ in range(self.repeat):
            u = self.k_p * (action - p) - self.k_v * v
            p, v = p + v * self.dt, v + u * self.dt
            # Visits are checked on every sub-step: the agent may pass through a goal ball
            # between two control steps.
            self.position = p
            self.visited_second = self.visited_second | (self.visited_first & self._near(1))
            self.visited_first = self.visited_first | self._near(0)
            self.closest_first = torch.minimum(self.closest_first, self.distance(0))
        self.velocity = v
        self.steps += 1
        return self.observation(), self.steps >= self.num_steps

    @property
    def is_success(self) -> Tensor:
        """Per episode: visited goal 1, then goal 2, and is within tolerance of goal 2 now."""
        self._check_started()
        return self.visited_first & self.visited_second & self._near(1)

    def distance(self, goal: int) -> Tensor:
        """Distance of every agent to goal ``goal`` (0 or 1), shape (num_envs,)."""
        self._check_started()
        return (self.position - self.goals[:, goal]).norm(dim=-1)

    def _near(self, goal: int) -> Tensor:
        return self.distance(goal) < self.tolerance

    def _check_started(self) -> None:
        if self.position is None:
            raise RuntimeError("call reset() before using the environment")


class ParticleOracle:
    """The demonstrator: target goal 1 until the agent has come within reach, then goal 2.

    It reads the environment's memory of the episode (which the observation lacks), so its
    actions are a discontinuous function of the observation alone.

    Args:
        env: the :class:`Particle` environment it acts in.
        switch_radius: switch to goal 2 once the agent has come this close to goal 1
            (``None``: the environment's ``tolerance``). IBC's oracle uses 0.01 with a 0.05
            success tolerance: a policy that copies it and switches a little early has still
            entered the tolerance ball.

    Example:
        >>> import torch, ebmlab as eb
        >>> env = eb.envs.Particle(8)
        >>> result = eb.envs.rollout(env, eb.envs.ParticleOracle(env),
        ...                          generator=torch.Generator().manual_seed(0))
        >>> bool(result.is_success.all())
        True
    """

    def __init__(self, env: Particle, switch_radius: float | None = None) -> None:
        if not isinstance(env, Particle):
            raise TypeError(f"env must be an ebmlab.envs.Particle; got {type(env).__name__}")
        self.env = env
        self.switch_radius = (
            None if switch_radius is None else check_positive(switch_radius, "switch_radius")
        )

    def __call__(self, observation: Tensor) -> Tensor:
        """Return the oracle's targets (num_envs, 2) for the current state."""
        goals = observation[:, 4:].reshape(-1, 2, 2)
        reached = (
            self.env.visited_first if self.switch_radius is None
            else self.env.closest_first < self.switch_radius
        )
        return torch.where(reached.unsqueeze(-1), goals[:, 1], goals[:, 0])


@dataclass(frozen=True)
class Rollout:
    """Episodes run by :func:`rollout`.

    Attributes:
        observations: (T, num_envs, 8), the observation each action was chosen from.
        actions: (T, num_envs, 2).
        positions: (T + 1, num_envs, 2), the start and the position after every step.
        goals: (num_envs, 2, 2).
        is_success: (num_envs,) bool.
    """

    observations: Tensor
    actions: Tensor
    positions: Tensor
    goals: Tensor
    is_success: Tensor

    @property
    def success_rate(self) -> float:
        """The fraction of successful episodes."""
        return float(self.is_success.double().mean())


def rollout(
    env: Particle,
    policy: Callable[[Tensor], Tensor],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Rollout:
    """Run one batch of episodes of ``env`` under ``policy`` (observations -> actions).

    Example:
        >>> import torch, ebmlab as eb
        >>> env = eb.envs.Particle(3, num_steps=5)
        >>> r = eb.envs.rollout(env, lambda obs: obs[:, :2], generator=torch.Generator())
        >>> r.actions.shape, r.positions.shape, bool(r.is_success.any())
        (torch.Size([5, 3, 2]), torch.Size([6, 3, 2]), False)
    """
    obs = env.reset(generator=generator, dtype=dtype)
    observations, actions, positions = [], [], [env.position.clone()]
    done = False
    while not done:
        with torch.no_grad():
            action = policy(obs)
        observations.append(obs)
        actions.append(action)
        obs, done = env.step(action)
        positions.append(env.position.clone())
    return Rollout(torch.stack(observations), torch.stack(actions), torch.stack(positions),
                   env.goals.clone(), env.is_success.clone())
