r"""``MostOffending``: the most offending incorrect answer, found by inference (a negative source).

References:
    LeCun, Chopra, Hadsell, Ranzato & Huang, "A Tutorial on Energy-Based Learning", 2006
    (most offending incorrect answer, section 2.2).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmlab._checks import check_positive, check_positive_int
from ebmlab.domain import Box, check_box
from ebmlab.energy import Energy

__all__ = ["MostOffending"]


class MostOffending:
    r"""The most offending incorrect answer: the lowest-energy :math:`y` at least ε from the truth.

    :math:`\bar y_i = \arg\min_{\lVert y - y_i\rVert \ge \varepsilon} F(x_i, y)`. The minimum of
    F over that region is either an unconstrained local minimum lying in it or a point of its
    boundary sphere, so both are searched: ``eb.infer`` finds the distinct minima of
    :math:`F(x_i, \cdot)` (multi-start), and projected gradient descent on the sphere
    :math:`\lVert y - y_i\rVert = \varepsilon` (from ``num_boundary`` random directions) finds
    the best boundary point; the lower of the two is returned. No gradient flows through the
    search (the loss differentiates :math:`F(x_i, \bar y_i)` only with respect to the
    parameters).

    Args:
        epsilon: the exclusion radius ε > 0 around the correct answer.
        domain: optional :class:`ebmlab.Box`: starts are uniform in it and iterates stay in it.
        num_starts: multi-start count for the unconstrained search.
        num_boundary: random directions for the boundary search (0 to skip it).
        solver: an inference solver or its name (default Adam).
        max_steps: steps of each search (``eb.infer`` keeps only converged minima when some
            start converged, so leave enough steps for ``gtol``).
        gtol: gradient-norm tolerance of the unconstrained search (loose: a negative needs
            to be offending, not exact).
        lr: step size of the boundary search, relative to ε (each step moves about
            ``lr * epsilon``).

    Example:
        >>> import torch, ebmlab as eb
        >>> dw = eb.energies.DoubleWell(1)
        >>> neg = eb.training.negatives.MostOffending(0.5, num_starts=8)
        >>> y_bar = neg(dw, torch.tensor([[1.0]]), generator=torch.Generator().manual_seed(0))
        >>> y_bar.round(decimals=3).tolist()
        [[-1.0]]
    """

    def __init__(
        self,
        epsilon: float,
        *,
        domain: Box | None = None,
        num_starts: int = 8,
        num_boundary: int = 4,
        solver: Any = None,
        max_steps: int = 200,
        gtol: float = 1e-3,
        lr: float = 0.1,
    ) -> None:
        self.epsilon = check_positive(epsilon, "epsilon")
        self.domain = check_box(domain)
        self.num_starts = check_positive_int(num_starts, "num_starts")
        self.num_boundary = check_positive_int(num_boundary, "num_boundary", minimum=0)
        self.solver = solver
        self.max_steps = check_positive_int(max_steps, "max_steps")
        self.gtol = check_positive(gtol, "gtol")
        self.lr = check_positive(lr, "lr")

    def __repr__(self) -> str:
        return f"MostOffending(epsilon={self.epsilon}, num_starts={self.num_starts})"

    def __call__(
        self,
        energy: Energy,
        y: Tensor,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        from ebmlab.inference import infer

        b, shape = y.shape[0], tuple(y.shape[1:])
        y = y.detach()
        res = infer(
            energy, x, y_shape=shape, num_starts=self.num_starts, domain=self.domain,
            solver=self.solver, generator=generator, max_steps=self.max_steps,
            gtol=self.gtol, dtype=y.dtype, device=y.device,
        )
        minima = res.y.expand(b, *res.y.shape[1:])  # (1 or B, K, *shape) -> (B, K, *shape)
        e_min = res.energy.expand(b, -1)
        dist = (minima - y.unsqueeze(1)).flatten(2).norm(dim=-1)  # (B, K)
        is_far = res.valid.expand(b, -1) & (dist >= self.epsilon)
        e_far = torch.where(is_far, e_min, torch.full_like(e_min, math.inf))
        pick = e_far.argmin(dim=1)
        best = minima[torch.arange(b, device=y.device), pick]  # (B, *shape)
        best_e = e_far.gather(1, pick.unsqueeze(1)).squeeze(1)
        if self.num_boundary:
            yb, eb_ = self._boundary(energy, y, x, generator)
            take = eb_ < best_e
            best = torch.where(take.reshape(b, *([1] * len(shape))), yb, best)
        return best

    def _boundary(
        self, energy: Energy, y: Tensor, x: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Minimise F on the sphere of radius ε around each ``y``; return points and energies."""
        from ebmlab.inference import GradientDescent, Objective, minimize

        b, s, shape = y.shape[0], self.num_boundary, tuple(y.shape[1:])
        centre = y.repeat_interleave(s, dim=0)  # (B*S, *shape)
        eps = self.epsilon

        def onto_sphere(v: Tensor) -> Tensor:
            d = v - centre
            norm = d.flatten(1).norm(dim=-1).clamp_min(1e-30)
            return centre + d * (eps / norm).reshape(-1, *([1] * len(shape)))

        u = torch.randn(centre.shape, generator=generator, dtype=y.dtype, device=y.device)
        xr = None if x is None else x.repeat_interleave(s, dim=0)  # (B, ...) -> (B*S, ...)

        def energy_and_unit_grad(v: Tensor, xx: Tensor | None) -> tuple[Tensor, Tensor]:
            # Normalised gradient: each step moves about lr·ε whatever F's scale.
            e, g = energy.energy_and_grad(v, xx)
            norm = g.flatten(1).norm(dim=-1).clamp_min(1e-30)
            return e, g / norm.reshape(-1, *([1] * len(shape)))

        objective = Objective(energy_and_unit_grad, xr, onto_sphere)
        run = minimize(
            objective, onto_sphere(centre + u), GradientDescent(lr=self.lr * eps),
            max_steps=self.max_steps, gtol=1e-12, ftol=1e-12, is_early_stop=False,
        )
        e = run.energy.reshape(b, s)
        points = run.y.reshape(b, s, *shape)
        if self.domain is not None:
            e = torch.where(self.domain.contains(points), e, torch.full_like(e, math.inf))
        e = torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))
        pick = e.argmin(dim=1)
        rows = torch.arange(b, device=y.device)
        return points[rows, pick], e[rows, pick]
