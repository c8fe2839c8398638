"""``Minimize``: z eliminated by an inner multi-start descent (zero temperature only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive, check_positive_int
from ebmlab.domain import Box, check_box
from ebmlab.energy import LatentEnergy
from ebmlab.inference.multistart import minimize, resolve_solver
from ebmlab.inference.solver import Objective, Solver

__all__ = ["Minimize"]


class Minimize:
    r"""Eliminate z by gradient-based minimisation over a continuous set (β = ∞ only).

    Each y is paired with ``num_starts`` starting latents (drawn once, here, so that the free
    energy is a deterministic function of y), all B × S problems are minimised as one batched
    program with :func:`ebmlab.inference.minimize`, and the lowest end point is kept. By the
    envelope theorem :math:`\nabla_y F_\infty = \partial_y E(x, y, \check z)`, so gradients
    need no differentiation through the inner solver.

    Args:
        z_shape: event shape of z.
        num_starts: starts per y.
        domain: an optional :class:`ebmlab.Box` for z: starts are uniform in it and iterates
            are projected onto it.
        init_scale: standard deviation of Gaussian starts without a domain.
        solver: ``"adam"``, ``"gd"``, ``"lbfgs"`` (default) or a solver instance.
        max_steps: most inner steps.
        gtol: inner convergence tolerance on the gradient norm.
        ftol: inner relative tolerance on energy changes.
        generator: random source of the starts.

    Example:
        >>> import torch, ebmlab as eb
        >>> latent = eb.latent.Minimize((1,), num_starts=4,
        ...                             generator=torch.Generator().manual_seed(0))
        >>> free = eb.FreeEnergy(eb.energies.Ellipse(), latent)
        >>> round(float(free(torch.tensor([[3.0, 0.0]])).detach()), 6)
        1.0
    """

    def __init__(
        self,
        z_shape: Sequence[int],
        *,
        num_starts: int = 8,
        domain: Box | None = None,
        init_scale: float = 1.0,
        solver: Solver | str | None = "lbfgs",
        max_steps: int = 200,
        gtol: float = 1e-8,
        ftol: float = 1e-12,
        generator: torch.Generator | None = None,
    ) -> None:
        self.z_shape = tuple(check_positive_int(int(s), "z_shape") for s in z_shape)
        self.num_starts = check_positive_int(num_starts, "num_starts")
        check_box(domain)
        if domain is not None and domain.shape != self.z_shape:
            raise ValueError(f"domain has shape {domain.shape} but z_shape is {self.z_shape}")
        self.domain = domain
        self.solver = resolve_solver(solver)
        self.max_steps = check_positive_int(max_steps, "max_steps", minimum=0)
        self.gtol = check_positive(gtol, "gtol")
        self.ftol = check_positive(ftol, "ftol")
        check_generator(generator)
        check_positive(init_scale, "init_scale")
        if domain is not None:
            starts = domain.sample(self.num_starts, generator=generator, dtype=torch.float64)
        else:
            starts = init_scale * torch.randn(
                (self.num_starts, *self.z_shape), generator=generator, dtype=torch.float64
            )
        self.starts = starts

    def __repr__(self) -> str:
        return f"Minimize(z_shape={self.z_shape}, num_starts={self.num_starts})"

    @torch.no_grad()
    def solve(
        self, latent_energy: LatentEnergy, y: Tensor, x: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(z, energy)``: the best end point per y, ``(B, *z_shape)`` and ``(B,)``."""
        b, s = y.shape[0], self.num_starts
        z0 = self.starts.to(dtype=y.dtype, device=y.device)
        z0 = z0.unsqueeze(0).expand(b, *z0.shape).reshape(b * s, *self.z_shape)
        yr = y.repeat_interleave(s, dim=0)  # (B, ...) -> (B*S, ...)
        xr = None if x is None else x.repeat_interleave(s, dim=0)

        def energy_and_grad(z: Tensor, rows: Tensor | None) -> tuple[Tensor, Tensor]:
            assert rows is not None
            e, _, gz = latent_energy.energy_and_grad(
                yr[rows], z, None if xr is None else xr[rows]
            )
            return e, gz

        rows = torch.arange(b * s, device=y.device)
        project = self.domain.project if self.domain is not None else None
        # The driver rebinds ``objective.x`` to the still-active rows as problems converge.
        objective = Objective(energy_and_grad, rows, project)
        run = minimize(
            objective, z0, self.solver, max_steps=self.max_steps, gtol=self.gtol, ftol=self.ftol
        )
        e = run.energy.reshape(b, s)
        e = torch.where(torch.isfinite(e), e, torch.full_like(e, float("inf")))
        best = e.argmin(1)
        z = run.y.reshape(b, s, *self.z_shape)[torch.arange(b, device=y.device), best]
        return z, e.gather(1, best.unsqueeze(1)).squeeze(1)
