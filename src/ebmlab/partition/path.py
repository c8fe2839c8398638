r"""The geometric annealing path of AIS: the temperature ``schedule`` and the ``TemperedEnergy``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmlab._checks import check_positive_int
from ebmlab.domain import Box
from ebmlab.energy import Energy

__all__ = ["SCHEDULES", "ADAPTIVE_SCHEDULES", "schedule", "TemperedEnergy"]

SCHEDULES = ("sigmoid", "linear", "geometric")
# Schedules :class:`AIS` also accepts, built from its pilot run (``partition/ladder.py``).
ADAPTIVE_SCHEDULES = ("adaptive",)


def schedule(num_temperatures: int, kind: str = "sigmoid", *, dtype: torch.dtype | None = None
             ) -> Tensor:
    r"""Return K + 1 increasing temperatures :math:`0 = t_0 < \dots < t_K = 1`.

    ``"linear"`` spaces them evenly, ``"geometric"`` evenly in :math:`\log t` from
    :math:`10^{-4}` (plus :math:`t_0 = 0`), and ``"sigmoid"`` (the default) as
    :math:`\sigma(\delta(2k/K - 1))` with :math:`\delta = 4`, rescaled to [0, 1]: dense at both
    ends, where the distributions change fastest.

    Example:
        >>> [round(t, 3) for t in schedule(4, "linear").tolist()]
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    check_positive_int(num_temperatures, "num_temperatures")
    k = torch.linspace(0, 1, num_temperatures + 1, dtype=dtype or torch.get_default_dtype())
    if kind == "linear":
        return k
    if kind == "geometric":
        t = torch.logspace(-4, 0, num_temperatures, dtype=k.dtype)
        return torch.cat([torch.zeros(1, dtype=k.dtype), t])
    if kind == "sigmoid":
        s = torch.sigmoid(4.0 * (2 * k - 1))
        return (s - s[0]) / (s[-1] - s[0])
    raise ValueError(f"schedule must be one of {SCHEDULES} or a tensor; got {kind!r}")


class TemperedEnergy(Energy):
    r"""The intermediate energy :math:`E_t = (1 - t)E_0 + t\,\beta F` of the geometric path.

    :math:`E_0 = -\log p_0` is the base's energy, so :math:`e^{-E_0}` integrates to 1 and
    :math:`e^{-E_1} = e^{-\beta F}`; outside ``domain`` (when given) :math:`E_t = +\infty`
    for :math:`t > 0`. A sampler targets it with ``beta=1``.

    Args:
        energy: the target energy F.
        base_log_prob: a function returning :math:`\log p_0(y)` for rows y (N, *y_shape).
        t: the position on the path, in [0, 1]: a float, or a tensor (N,) of one position per
            row of y strictly inside (0, 1) (the per-input ladders of ``schedule="adaptive"``).
        beta: the target's inverse temperature.
        domain: the box the target is restricted to, or ``None``.
    """

    def __init__(
        self,
        energy: Energy,
        base_log_prob: Any,
        t: float | Tensor,
        beta: float,
        domain: Box | None = None,
    ) -> None:
        super().__init__()
        self.energy = energy
        self.base_log_prob = base_log_prob
        self.t = t if isinstance(t, Tensor) else float(t)
        # Per-row positions lie strictly inside (0, 1): both parts of the path are present.
        self.has_base = isinstance(t, Tensor) or self.t < 1
        self.has_target = isinstance(t, Tensor) or self.t > 0
        self.beta = float(beta)
        self.domain = domain
        self.y_shape = energy.y_shape

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        return self.combine(y, self.energy.forward(y, x) if self.has_target else None)

    def combine(self, y: Tensor, f: Tensor | None) -> Tensor:
        """:math:`E_t(y)` from the target's energy ``f`` = F(y) already evaluated (``None``
        at t = 0): the same arithmetic as :meth:`forward`, without calling F."""
        t = self.t
        e = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        if self.has_base:
            e = e - (1 - t) * self.base_log_prob(y)
        if self.has_target:
            if self.domain is not None:
                f = torch.where(self.domain.contains(y), f, torch.full_like(f, math.inf))
            e = e + (t * self.beta) * f
        return e

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r""":math:`E_t` and its gradient, with the target's own (analytic) ``energy_and_grad``.

        The base's part is differentiated by autograd (a closed form: cheap); outside
        ``domain`` the energy is :math:`+\infty` and the target's gradient is replaced by 0.
        """
        parts = self.energy.energy_and_grad(y, x) if self.has_target else None
        return self.combine_with_grad(y, parts)

    def combine_with_grad(self, y: Tensor, parts: tuple[Tensor, Tensor] | None
                          ) -> tuple[Tensor, Tensor]:
        """:math:`E_t(y)` and its gradient from ``parts`` = (F(y), ∇F(y)) already evaluated
        (``None`` at t = 0): the arithmetic of :meth:`energy_and_grad`, without calling F."""
        t = self.t
        # A per-row t multiplies the gradient rows (N, *shape) through a column (N, 1, ...).
        tg = t.reshape(-1, *([1] * (y.ndim - 1))) if isinstance(t, Tensor) else t
        e = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        g = torch.zeros_like(y)
        closed_form = getattr(self.base_log_prob, "grad", None)
        if self.has_base and closed_form is not None:  # a normal base: no autograd graph
            g = g - (1 - tg) * closed_form(y)
            e = e - (1 - t) * self.base_log_prob(y)
        elif self.has_base:
            with torch.enable_grad():
                yb = y.detach().requires_grad_(True)
                log_p0 = self.base_log_prob(yb)
                if log_p0.requires_grad:
                    (g0,) = torch.autograd.grad(log_p0.sum(), yb)
                    g = g - (1 - tg) * g0
            e = e - (1 - t) * log_p0.detach()
        if self.has_target:
            f, gf = parts
            if self.domain is not None:
                inside = self.domain.contains(y)
                f = torch.where(inside, f, torch.full_like(f, math.inf))
                gf = torch.where(inside.reshape(-1, *([1] * (y.ndim - 1))), gf, 0.0)
            e = e + (t * self.beta) * f
            g = g + (tg * self.beta) * gf
        return e, g
