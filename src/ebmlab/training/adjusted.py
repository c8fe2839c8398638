r"""Metropolis-adjusted Langevin steps (MALA) for negatives, with an adapted step size.

The built-in chain of :class:`ebmlab.training.negatives.Sampled` when ``metropolis=True``
(the default, with ``step_size="auto"``): each Langevin proposal
:math:`y' = y - h\nabla F + \sqrt{2h/\beta}\,\xi` is accepted with probability
:math:`\min(1, e^{-\beta(F(y') - F(y))} q(y \mid y') / q(y' \mid y))`, so the chain has no
discretisation bias whatever the step; with ``step_range`` the step adapts to the mean
acceptance probability (:data:`TARGET_ACCEPTANCE`, Roberts & Rosenthal 1998).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab.domain import Box
from ebmlab.energy import Energy

__all__ = [
    "AUTO_STEP_FRACTION",
    "TARGET_ACCEPTANCE",
    "ADAPT_RATE",
    "metropolis_langevin",
    "uniform_jumps",
    "bounding_box",
    "start_step",
    "AUTO_JUMPS",
    "AUTO_JUMP_MAX_DIM",
]

AUTO_STEP_FRACTION = 0.005  # h0 = 0.005 * s^2, s = the positives' mean per-coordinate std
TARGET_ACCEPTANCE = 0.574  # optimal for MALA (Roberts & Rosenthal 1998)
ADAPT_RATE = 0.2  # log h += 0.2 * (acceptance - target) after every step
AUTO_JUMPS = 4  # Sampled(jumps="auto"): uniform independence moves per call on small events,
AUTO_JUMP_MAX_DIM = 4  # of at most this many coordinates


def start_step(y: Tensor) -> tuple[Tensor, tuple[float, float]]:
    """The adapted step's start :math:`h_0 = 0.005 s^2` and range, ``s`` the scale of ``y``.

    ``s`` is the mean per-coordinate sd of the positives ``y``; without a usable one
    :math:`h_0 = 0.001`. Returns the step (0-d, of ``y``'s dtype) and
    :math:`(10^{-6} h_0, 4 s^2)`.
    """
    flat = y.reshape(y.shape[0], -1)
    s = float(flat.double().std(0, unbiased=False).mean()) if y.shape[0] > 1 else math.nan
    if not math.isfinite(s) or s <= 0:
        s = math.sqrt(0.001 / AUTO_STEP_FRACTION)  # h0 = 0.001 without a usable scale
    h0 = AUTO_STEP_FRACTION * s**2
    return torch.full((), h0, dtype=y.dtype, device=y.device), (1e-6 * h0, 4.0 * s**2)


def bounding_box(y: Tensor, pad: float = 0.0) -> Box:
    r"""The box of the rows of ``y`` (N, *shape), widened by ``pad`` times its width each side.

    Plus :math:`10^{-6}(1 + \mathrm{width})`, so that a constant column still gives a box.

    Example:
        >>> box = bounding_box(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), pad=0.5)
        >>> [round(v, 4) for v in box.low.tolist()], [round(v, 4) for v in box.high.tolist()]
        ([-1.0, 1.0], [3.0, 1.0])
    """
    flat = y.detach().reshape(y.shape[0], -1)
    low, high = flat.amin(0), flat.amax(0)
    width = high - low
    margin = 1e-6 * (1.0 + width) if not pad else pad * width + 1e-6 * (1.0 + width)
    return Box((low - margin).reshape(y.shape[1:]), (high + margin).reshape(y.shape[1:]))


def metropolis_langevin(
    energy: Energy,
    y: Tensor,
    x: Tensor | None,
    step: float | Tensor,
    num_steps: int,
    *,
    beta: float = 1.0,
    domain: Box | None = None,
    generator: torch.Generator | None = None,
    step_range: tuple[float, float] | None = None,
) -> tuple[Tensor, float | Tensor]:
    r"""Run ``num_steps`` MALA steps from ``y``; return the chains' ends and the step.

    Proposals that leave ``domain`` are rejected (the target restricted to the box). Each
    step draws the Gaussian noise, then one uniform per chain. With ``step_range = (low,
    high)`` the step (a 0-d tensor) is multiplied after every step by
    :math:`e^{0.2\,(a - 0.574)}`, :math:`a` the mean acceptance probability of the chains,
    and clamped to the range; without it the step is fixed.

    Args:
        energy: the energy, with ``energy_and_grad(y, x)``.
        y: starts (B, *y_shape).
        x: conditioning inputs (B, *x_shape) or ``None``.
        step: the Langevin step h.
        num_steps: steps to run (0 returns ``y``).
        beta: inverse temperature.
        domain: an optional :class:`ebmlab.Box`.
        generator: the random source.
        step_range: adapt the step within this range (``None``: fixed).

    Returns:
        ``(y, step)``: the chains' ends (detached) and the step after adaptation.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2))
        >>> y, h = metropolis_langevin(q, torch.zeros(500, 2), None, torch.tensor(1.0), 20,
        ...                            generator=torch.Generator().manual_seed(0),
        ...                            step_range=(1e-3, 10.0))
        >>> y.shape, 0.3 < float(h) < 3.0
        (torch.Size([500, 2]), True)
    """
    if not num_steps:
        return y, step
    view = (-1, *([1] * (y.ndim - 1)))
    with torch.no_grad():
        e, g = energy.energy_and_grad(y, x)
        for _ in range(num_steps):
            xi = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
            u = torch.rand(y.shape[:1], generator=generator, dtype=y.dtype, device=y.device)
            proposal = y - step * g + (2.0 * step / beta) ** 0.5 * xi
            e_new, g_new = energy.energy_and_grad(proposal, x)
            back = y - proposal + step * g_new  # log q(y | y') = -beta |back|^2 / (4h)
            log_ratio = (
                beta * (e - e_new)
                - beta / (4.0 * step) * back.square().flatten(1).sum(1)
                + 0.5 * xi.square().flatten(1).sum(1)  # -log q(y' | y) = |xi|^2 / 2
            )
            if domain is not None:
                log_ratio = log_ratio.masked_fill(~domain.contains(proposal), -math.inf)
            log_ratio = log_ratio.nan_to_num(nan=-math.inf)
            is_accepted = u.log() < log_ratio
            y = torch.where(is_accepted.view(view), proposal, y)
            e = torch.where(is_accepted, e_new, e)
            g = torch.where(is_accepted.view(view), g_new, g)
            if step_range is not None:
                rate = log_ratio.clamp(max=0.0).exp().mean()
                step = (step * torch.exp(ADAPT_RATE * (rate - TARGET_ACCEPTANCE))).clamp(
                    *step_range)
    if isinstance(step, Tensor):
        step = step.detach()
    return y.detach(), step


def uniform_jumps(
    energy: Energy,
    y: Tensor,
    x: Tensor | None,
    box: Box,
    num_jumps: int,
    *,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Run ``num_jumps`` independence Metropolis-Hastings moves with proposals uniform in ``box``.

    Each move proposes :math:`y' \sim U(\mathrm{box})` for every chain and accepts it with
    probability :math:`\min(1, e^{-\beta(F(y') - F(y))})` (the uniform proposal density
    cancels; a chain outside the box never jumps, its reverse move being impossible), so
    :math:`e^{-\beta F}` restricted to the box is kept. Unlike local Langevin steps these
    moves cross between separated modes: a chain lands in each mode in proportion to the
    model's mass there, which is what lets a contrastive loss learn the mixture weights.
    Each move costs one energy evaluation (no gradient) and draws the proposals, then one
    uniform per chain. In high dimension the proposals are almost never accepted.

    Args:
        energy: the energy, called as ``energy(y, x)`` -> (B,).
        y: the chains (B, *box.shape).
        x: conditioning inputs (B, *x_shape) or ``None``.
        box: where proposals are drawn.
        num_jumps: moves to run (0 returns ``y``).
        beta: inverse temperature.
        generator: the random source.

    Returns:
        ``(y, accepted)``: the chains after the moves (detached) and the fraction of chains
        that jumped at least once.

    Example:
        >>> import torch, ebmlab as eb
        >>> mix = eb.energies.GaussianMixture.ring(2, radius=2.0, scale=0.5)
        >>> y0 = torch.tensor([[2.0, 0.0]]).repeat(2000, 1)  # all chains in one of two modes
        >>> y, _ = uniform_jumps(mix, y0, None, eb.Box([-3.0, -3.0], [3.0, 3.0]), 50,
        ...                      generator=torch.Generator().manual_seed(0))
        >>> 0.4 < float((y[:, 0] < 0).double().mean()) < 0.6  # half moved to the other mode
        True
    """
    moved = torch.zeros(y.shape[:1], dtype=torch.bool, device=y.device)
    if not num_jumps:
        return y, moved.double().mean()
    view = (-1, *([1] * (y.ndim - 1)))
    with torch.no_grad():
        e = energy(y, x)
        can_jump = box.contains(y)
        for _ in range(num_jumps):
            proposal = box.sample(y.shape[0], generator=generator, dtype=y.dtype,
                                  device=y.device)
            u = torch.rand(y.shape[:1], generator=generator, dtype=y.dtype, device=y.device)
            e_new = energy(proposal, x)
            log_ratio = (beta * (e - e_new)).nan_to_num(nan=-math.inf)
            is_accepted = (u.log() < log_ratio) & can_jump
            y = torch.where(is_accepted.view(view), proposal, y)
            e = torch.where(is_accepted, e_new, e)
            moved |= is_accepted
    return y.detach(), moved.double().mean()
