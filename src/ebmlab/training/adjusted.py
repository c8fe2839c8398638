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

__all__ = ["AUTO_STEP_FRACTION", "TARGET_ACCEPTANCE", "ADAPT_RATE", "metropolis_langevin"]

AUTO_STEP_FRACTION = 0.005  # h0 = 0.005 * s^2, s = the positives' mean per-coordinate std
TARGET_ACCEPTANCE = 0.574  # optimal for MALA (Roberts & Rosenthal 1998)
ADAPT_RATE = 0.2  # log h += 0.2 * (acceptance - target) after every step


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
