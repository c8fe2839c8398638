r"""The adaptive AIS ladder: temperatures of equal thermodynamic length, learnt in the pilot."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["spread_of_u", "equal_length_ladder", "nearest_steps", "adapt_ladder",
           "nearest_params", "NearestParams"]


def spread_of_u(increments: list[Tensor], temperatures: list[float], b: int) -> Tensor:
    r"""The spread :math:`\mathrm{sd}_{t}(U)` of :math:`U = dE_t/dt` at each pilot temperature.

    ``increments[k]`` (B*C,) are the pilot's log-weight increments
    :math:`-(t_{k+1} - t_k)\,U(y)` at chains that have just moved at :math:`t_k`; their spread
    over the C chains of each input, divided by the temperature step, estimates
    :math:`\mathrm{sd}_{t_k}(U)`. Non-finite increments (chains outside the support) are left
    out. Returns (B, K + 1): the last temperature, where no increment follows, repeats the
    one before.

    Example:
        >>> inc = [torch.tensor([0.0, -1.0]), torch.tensor([0.0, -2.0])]
        >>> [round(v, 3) for v in spread_of_u(inc, [0.0, 0.5, 1.0], 1)[0].tolist()]
        [1.414, 2.828, 2.828]
    """
    sds = []
    for inc, t0, t1 in zip(increments, temperatures[:-1], temperatures[1:], strict=True):
        rows = inc.reshape(b, -1)
        finite = torch.isfinite(rows)
        n = finite.sum(1).clamp_min(2)
        r = torch.where(finite, rows, 0.0)
        mean = r.sum(1, keepdim=True) / n.unsqueeze(1)
        var = torch.where(finite, (r - mean).square(), 0.0).sum(1) / (n - 1)
        sds.append(var.sqrt() / (t1 - t0))
    sds.append(sds[-1])
    return torch.stack(sds, 1)


def equal_length_ladder(temperatures: list[float] | Tensor, sd: Tensor, num_temperatures: int
                        ) -> Tensor:
    r"""K + 1 temperatures per input that split the thermodynamic length into equal parts.

    The thermodynamic length :math:`\Lambda(t) = \int_0^t \mathrm{sd}_s(U)\,ds` (trapezoid
    rule over the pilot's ``temperatures`` with spreads ``sd`` (B, K0 + 1)) is inverted at
    :math:`j\Lambda(1)/K` by linear interpolation. With exact transitions the variance of
    the AIS log weight is :math:`\approx \sum_k \Delta t_k^2\,\mathrm{Var}_{t_k}(U)`, which
    for a given K is smallest when every :math:`\Delta t_k\,\mathrm{sd}_{t_k}(U)` is equal:
    then it is :math:`\Lambda(1)^2 / K` (Gelman and Meng 1998; Syed et al. 2021). Spreads
    that are not finite take the input's largest finite spread (denser there), and every
    spread is at least 1e-6 times that largest one, so the ladder increases strictly.

    Returns:
        (B, K + 1) temperatures increasing from exactly 0 to exactly 1, in ``sd``'s dtype.

    Example:
        >>> t = [0.0, 0.5, 1.0]
        >>> equal_length_ladder(t, torch.tensor([[3.0, 1.0, 1.0]]), 2)[0].tolist()
        [0.0, 0.375, 1.0]
    """
    t = torch.as_tensor(temperatures, dtype=sd.dtype, device=sd.device)
    finite = torch.isfinite(sd)
    top = torch.where(finite, sd, 0.0).amax(1, keepdim=True)
    top = torch.where(top > 0, top, torch.ones_like(top))
    sd = torch.where(finite, sd, top).clamp_min(1e-6 * top)
    pieces = 0.5 * (sd[:, 1:] + sd[:, :-1]) * t.diff()  # (B, K0)
    length = torch.cat([torch.zeros_like(sd[:, :1]), pieces.cumsum(1)], 1)  # (B, K0 + 1)
    targets = torch.linspace(0, 1, num_temperatures + 1, dtype=sd.dtype, device=sd.device)
    targets = targets * length[:, -1:]  # (B, K + 1)
    hi = torch.searchsorted(length, targets).clamp(1, length.shape[1] - 1)
    lo = hi - 1
    l0, l1 = length.gather(1, lo), length.gather(1, hi)
    frac = ((targets - l0) / (l1 - l0)).clamp(0.0, 1.0)
    out = t[lo] + frac * (t[hi] - t[lo])
    out[:, 0], out[:, -1] = 0.0, 1.0
    return out


def nearest_steps(pilot: list[float], ladder: Tensor, num_steps: int) -> Tensor:
    """For every step of the run on ``ladder`` (B, K + 1), the pilot step at the nearest
    temperature (the one whose tuned kernel it reuses): (K * num_steps, B) indices.

    Step k of a run is the (k % num_steps)-th step at temperature index k // num_steps + 1;
    the pilot ran on ``pilot`` (K0 + 1 temperatures) with the same ``num_steps``.

    Example:
        >>> nearest_steps([0.0, 0.5, 1.0], torch.tensor([[0.0, 0.3, 0.9, 1.0]]), 1).T.tolist()
        [[0, 1, 1]]
    """
    t = torch.as_tensor(pilot[1:], dtype=ladder.dtype, device=ladder.device)  # (K0,)
    near = (ladder[:, 1:, None] - t).abs().argmin(-1)  # (B, K)
    steps = near.unsqueeze(-1) * num_steps + torch.arange(num_steps, device=ladder.device)
    return steps.reshape(ladder.shape[0], -1).T


def adapt_ladder(run: Any, num_temperatures: int) -> Tensor:
    """Replace ``run.temperatures`` (a recorded pilot's ladder) by the equal-length ladder.

    ``run`` is an :class:`~ebmlab.partition.annealing.Annealing` pass just called with
    ``record=True``. Its new ladder holds 0 and 1 as floats and the temperatures in between
    as tensors (B,), one per input. Returns the ladder (B, K + 1) (float64).
    """
    sd = spread_of_u([inc.double() for inc in run.increments], run.temperatures, run.b)
    ladder = equal_length_ladder(run.temperatures, sd, num_temperatures)
    run.temperatures = [0.0, *(ladder[:, j] for j in range(1, num_temperatures)), 1.0]
    return ladder


class NearestParams:
    """The pilot's tuned (factor, spread, chol) of every step, gathered per input at the
    nearest pilot temperature (see :func:`nearest_steps`); indexed by the run's step.
    ``means`` (one (B, 1, D) per pilot step, pCNL's reference means) are gathered alike by
    :meth:`mean`."""

    def __init__(self, params: list[tuple[Tensor, Tensor, Tensor | None]], index: Tensor,
                 means: list[Tensor] | None = None) -> None:
        self.index = index  # (K * num_steps, B)
        self.means = torch.stack(means) if means else None  # (P, B, 1, D)
        self.factors = torch.stack([p[0] for p in params])  # (P, B, 1, 1)
        self.spreads = torch.stack([p[1] for p in params])  # (P, B, 1, D)
        self.chols = [p[2] for p in params]
        self.rows = torch.arange(index.shape[1], device=index.device)

    def __len__(self) -> int:
        return self.index.shape[0]

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor, Tensor | None]:
        j = self.index[k]
        factor, spread = self.factors[j, self.rows], self.spreads[j, self.rows]
        picked = [self.chols[i] for i in j.tolist()]
        if all(c is None for c in picked):
            return factor, spread, None
        # A pilot step without a dense factor stands in with its diagonal one (the same
        # preconditioner as the diagonal mass).
        chol = torch.stack([c[r] if c is not None else torch.diag(self.spreads[i, r, 0])
                            for r, (i, c) in enumerate(zip(j.tolist(), picked, strict=True))])
        return factor, spread, chol

    def mean(self, k: int) -> Tensor | None:
        """The recorded mean (B, 1, D) of step k's pilot step per input, or ``None``."""
        return None if self.means is None else self.means[self.index[k], self.rows]


def nearest_params(params: list[tuple[Tensor, Tensor, Tensor | None]], pilot: list[float],
                   ladder: Tensor, num_steps: int, means: list[Tensor] | None = None
                   ) -> NearestParams:
    """The pilot's tuned kernels for a run on ``ladder`` (B, K + 1): :class:`NearestParams`."""
    return NearestParams(params, nearest_steps(pilot, ladder, num_steps), means)
