"""Joint inference over (y, z) for a latent-variable energy: ``eb.infer`` on a LatentEnergy."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from ebmlab._compile import check_compile
from ebmlab.domain import Box, check_box
from ebmlab.energy import LatentEnergy, check_energy_output
from ebmlab.inference.compiled_loop import (
    compiled_block,
    functional_latent_energy_and_grad,
    minimize_compiled,
)
from ebmlab.inference.multistart import Descent, Landscape, assemble, minimize, starts
from ebmlab.inference.problem import check_problem, event_shape
from ebmlab.inference.result import Inference, warn_unconverged
from ebmlab.inference.solver import Objective, Solver

__all__ = ["infer_joint"]


def infer_joint(
    energy: LatentEnergy,
    x: Tensor | None = None,
    *,
    y_shape: tuple[int, ...] | None = None,
    z_shape: tuple[int, ...] | None = None,
    num_starts: int | None = None,
    domain: Box | None = None,
    z_domain: Box | None = None,
    solver: Solver | str | None = None,
    generator: torch.Generator | None = None,
    init: Tensor | None = None,
    max_steps: int = 500,
    gtol: float = 1e-5,
    ftol: float = 1e-9,
    check_every: int = 10,
    early_stop: bool = True,
    merge_tol: float | None = None,
    return_trajectory: bool = False,
    init_scale: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    compile: bool | str = False,
) -> Inference:
    r"""Find the distinct joint minima :math:`(\check y, \check z) = \arg\min_{y,z} E(x, y, z)`.

    Every start is a pair (y, z); all B × S pairs are minimised together as one batched
    problem in the concatenated variable ``[y, z]`` by the same driver and solvers as
    :func:`ebmlab.infer`, end points closer than ``merge_tol`` in (y, z) are merged, and the
    result carries the y part in ``y`` and the z part in ``z``.

    Args:
        energy: the :class:`ebmlab.LatentEnergy` E.
        x: conditioning inputs ``(B, *x_shape)`` or ``None`` (B = 1).
        y_shape, z_shape: event shapes; taken from the domains or the energy if omitted.
        num_starts: starts S per input (default: from ``init``, else 32).
        domain, z_domain: optional :class:`ebmlab.Box` for y and z: starts are uniform in
            them and iterates are projected onto them; without one, starts are Gaussian with
            standard deviation ``init_scale``.
        solver, generator, max_steps, gtol, ftol, check_every, early_stop, dtype, device:
            as in :func:`ebmlab.infer`.
        init: starting y values (S, *y_shape) or (B, S, *y_shape); z starts stay random.
        merge_tol: distance in (y, z) under which end points are one minimum; default
            ``1e-3`` times the diameter of the domains when both are given, else ``1e-2``.
        return_trajectory: keep the y part of every path, ``(T, B, S, *y_shape)``.
        init_scale: standard deviation of Gaussian starts.
        compile: as in :func:`ebmlab.infer`: the solver's steps in compiled blocks (an
            autograd energy differentiated by ``torch.func.grad``), the merge eager.

    Returns:
        An :class:`ebmlab.Inference` whose ``z`` holds ``(B, K, *z_shape)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> res = eb.infer(eb.energies.Ellipse(), num_starts=8,
        ...                generator=torch.Generator().manual_seed(0))
        >>> z = res.z[0, 0]
        >>> torch.allclose(res.best[0], eb.energies.Ellipse().decode(z[None])[0], atol=1e-3)
        True
    """
    if not callable(getattr(energy, "energy_and_grad", None)) or not hasattr(energy, "z_shape"):
        raise TypeError(f"energy must be an ebmlab.LatentEnergy; got {type(energy).__name__}")
    check_box(domain)
    check_box(z_domain, "z_domain")
    if merge_tol is None:
        merge_tol = 1e-2
        if domain is not None and z_domain is not None:
            merge_tol = 1e-3 * math.hypot(domain.diameter, z_domain.diameter)
    p = check_problem(
        energy, x, y_shape=y_shape, num_starts=num_starts, domain=domain, solver=solver,
        generator=generator, init=init, max_steps=max_steps, gtol=gtol, ftol=ftol,
        check_every=check_every, merge_tol=merge_tol, dtype=dtype, device=device,
    )
    mode = check_compile(compile)
    b, s, ys = p.b, p.s, p.shape
    zs = event_shape(
        z_shape, z_domain, energy.z_shape, name="z_shape", domain_name="z_domain",
        owner=type(energy).__name__,
    )
    dy, dz = math.prod(ys), math.prod(zs)
    y0 = starts(b, s, ys, domain, init, generator, p.dtype, p.device, init_scale)
    z0 = starts(b, s, zs, z_domain, None, generator, p.dtype, p.device, init_scale)
    xr = None if x is None else x.repeat_interleave(s, dim=0)  # (B, ...) -> (B*S, ...)
    check_energy_output(
        energy.forward(y0[::s], z0[::s], x), b, f"{type(energy).__name__}.forward"
    )

    def split(v: Tensor) -> tuple[Tensor, Tensor]:
        # (N, dy + dz) -> (N, *y_shape), (N, *z_shape)
        return v[:, :dy].reshape(-1, *ys), v[:, dy:].reshape(-1, *zs)

    joint_grad = energy.energy_and_grad
    if mode is not None and type(energy).energy_and_grad is LatentEnergy.energy_and_grad:
        joint_grad = functional_latent_energy_and_grad(energy.forward)

    def energy_and_grad(v: Tensor, xv: Tensor | None) -> tuple[Tensor, Tensor]:
        y, z = split(v)
        e, gy, gz = joint_grad(y, z, xv)
        return e, torch.cat([gy.reshape(-1, dy), gz.reshape(-1, dz)], 1)

    project = None
    if domain is not None or z_domain is not None:

        def project(v: Tensor) -> Tensor:
            y, z = split(v)
            y = domain.project(y) if domain is not None else y
            z = z_domain.project(z) if z_domain is not None else z
            return torch.cat([y.reshape(-1, dy), z.reshape(-1, dz)], 1)

    v0 = torch.cat([y0.reshape(b * s, dy), z0.reshape(b * s, dz)], 1)
    options = dict(max_steps=max_steps, gtol=gtol, ftol=ftol, check_every=check_every,
                   is_early_stop=early_stop, is_trajectory=return_trajectory, groups=s)
    objective = Objective(energy_and_grad, xr, project)
    if mode is None:
        run = minimize(objective, v0, p.solver, **options)
    else:
        run = minimize_compiled(objective, v0, p.solver, block=compiled_block(mode), **options)
    landscape = Landscape(energy_and_grad, x, (dy + dz,), project)
    joint = assemble(
        run, b, s, (dy + dz,), p.merge_tol, landscape=landscape,
        descent=Descent(p.solver, max_steps, gtol, ftol, check_every),
        gscale=run.gscale[::s], fscale=run.fscale[::s], gtol=gtol,
    )

    warn_unconverged(joint, max_steps)
    k = joint.y.shape[1]
    trajectory = None
    if joint.trajectory is not None:
        t = joint.trajectory.shape[0]
        trajectory = joint.trajectory[..., :dy].reshape(t, b, s, *ys)
    return dataclasses.replace(
        joint,
        y=joint.y[..., :dy].reshape(b, k, *ys),
        z=joint.y[..., dy:].reshape(b, k, *zs),
        trajectory=trajectory,
    )
