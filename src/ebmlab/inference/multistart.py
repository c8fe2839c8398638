"""The multi-start engine: N independent minimisations run as one batched program.

``eb.infer``, joint (y, z) inference, ``eb.latent.Minimize``, ``MostOffending`` and the
sharded helpers all minimise through :func:`minimize`, draw their starts with :func:`starts`
and turn end points into an :class:`ebmlab.Inference` with :func:`assemble`. This module
holds the solver registry and the starts; the loop lives in
:mod:`ebmlab.inference.minimization` and the assembly in :mod:`ebmlab.inference.assembly`,
both re-exported here (their old home).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab._checks import check_tensor
from ebmlab.domain import Box
from ebmlab.inference.adam import Adam
from ebmlab.inference.annealed_langevin import AnnealedLangevin
from ebmlab.inference.assembly import Descent, Landscape, assemble
from ebmlab.inference.dfo import DFO
from ebmlab.inference.gradient_descent import GradientDescent
from ebmlab.inference.hybrid import Hybrid
from ebmlab.inference.lbfgs import LBFGS
from ebmlab.inference.minimization import (
    Minimization,
    group_scales,
    minimize,
    projected_grad,
    projected_grad_norm,
)
from ebmlab.inference.solver import Solver

__all__ = [
    "SOLVERS",
    "resolve_solver",
    "Minimization",
    "minimize",
    "group_scales",
    "projected_grad",
    "projected_grad_norm",
    "starts",
    "Landscape",
    "Descent",
    "assemble",
]

SOLVERS: dict[str, Callable[[], Solver]] = {
    "adam": Adam,
    "gd": GradientDescent,
    "lbfgs": LBFGS,
    "hybrid": Hybrid,
    "dfo": DFO,
    "langevin": AnnealedLangevin,
}


def resolve_solver(solver: Solver | str | None) -> Solver:
    """Return a solver instance from ``None`` (:class:`Hybrid`), a registry name or an instance."""
    if solver is None:
        return Hybrid()
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)} or a solver; got {solver!r}")
        return SOLVERS[solver]()
    if not (hasattr(solver, "init") and hasattr(solver, "step")):
        raise TypeError(f"solver must have init() and step(); got {type(solver).__name__}")
    return solver


def starts(
    b: int,
    s: int,
    y_shape: tuple[int, ...],
    domain: Box | None,
    init: Tensor | None,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
    init_scale: float,
) -> Tensor:
    """Return the (B·S, *y_shape) starting points: ``init``, uniform in ``domain`` or Gaussian.

    ``init`` is (S, *y_shape), shared by the B inputs, or (B, S, *y_shape), in the problem's
    dtype and device (it is detached, never cast); without it the starts are uniform in
    ``domain``, or Gaussian with standard deviation ``init_scale``.
    """
    if init is not None:
        check_tensor(init, "init")
        if tuple(init.shape) == (s, *y_shape):
            init = init.unsqueeze(0).expand(b, *init.shape)
        if tuple(init.shape) != (b, s, *y_shape):
            raise ValueError(
                f"init has shape {tuple(init.shape)}; expected (num_starts, *y_shape) = "
                f"{(s, *y_shape)} or (B, num_starts, *y_shape) = {(b, s, *y_shape)}"
            )
        if init.dtype != dtype or not _same_device(init.device, torch.device(device)):
            raise ValueError(
                f"init has dtype {init.dtype} on {init.device} but the problem is {dtype} on "
                f"{device} (from x, or dtype=/device=); pass init in the same dtype and device "
                "(nothing is cast silently)"
            )
        # A start that requires grad is detached: no graph is kept across solver steps.
        return init.detach().reshape(b * s, *y_shape)
    if domain is not None:
        return domain.sample(b * s, generator=generator, dtype=dtype, device=device)
    noise = torch.randn((b * s, *y_shape), generator=generator, dtype=dtype, device=device)
    return init_scale * noise


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)

