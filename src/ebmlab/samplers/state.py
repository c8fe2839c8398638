"""Frozen records returned by the sampling kernels: ``State`` and the per-kernel ``Info``."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["State", "Info", "HMCInfo", "NUTSInfo"]


class State(NamedTuple):
    """The state of a batch of chains, with the energy and gradient cached at ``position``.

    Attributes:
        position: the current samples ``(chains, *y_shape)``.
        energy: :math:`F(x, y)` at ``position``, shape ``(chains,)``.
        grad: :math:`\\nabla_y F` at ``position``, shaped like ``position``.
    """

    position: Tensor
    energy: Tensor
    grad: Tensor


class Info(NamedTuple):
    """What one step of Langevin, MALA or random-walk Metropolis did, per chain ``(chains,)``.

    Attributes:
        acceptance_rate: the Metropolis acceptance probability of the proposal (1 for ULA).
        is_accepted: whether the proposal was accepted (always true for ULA).
        is_divergent: the proposal had a non-finite energy or gradient (for the gradient-free
            random walk: an energy of NaN or :math:`-\\infty`; :math:`+\\infty` is a wall).
    """

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_divergent: Tensor


class HMCInfo(NamedTuple):
    """What one HMC step did, per chain.

    Attributes:
        acceptance_rate: :math:`\\min(1, e^{-\\beta \\Delta H})` of the trajectory end point.
        is_accepted: whether the end point was accepted.
        is_divergent: :math:`\\beta \\Delta H` above the divergence threshold or not finite.
        energy_error: :math:`\\Delta H = H_{end} - H_{start}` (in units of the energy).
    """

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    energy_error: Tensor


class NUTSInfo(NamedTuple):
    """What one NUTS step did, per chain.

    Attributes:
        acceptance_rate: mean of :math:`\\min(1, e^{-\\beta \\Delta H})` over the new states of
            the tree (the statistic step-size adaptation targets).
        is_accepted: whether the chain moved to a new state.
        is_divergent: the trajectory diverged (non-finite or :math:`\\beta\\Delta H` > 1000).
        tree_depth: number of doublings made.
        num_integration_steps: leapfrog steps of the chain's tree.
    """

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    tree_depth: Tensor
    num_integration_steps: Tensor
