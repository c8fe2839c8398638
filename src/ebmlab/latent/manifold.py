"""``manifold``: for each z of a finite latent set, the y that minimises E(x, y, z)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_tensor, reference
from ebmlab.energy import Energy, LatentEnergy
from ebmlab.inference.infer import infer
from ebmlab.inference.solver import Solver
from ebmlab.latent.sets import LatentSet

__all__ = ["manifold"]


class _FixedLatent(Energy):
    """E(x, y, z) with (z, x) fixed per row, packed into the conditioning tensor."""

    def __init__(
        self,
        latent_energy: LatentEnergy,
        z_shape: tuple[int, ...],
        x_shape: tuple[int, ...] | None,
    ) -> None:
        super().__init__()
        self.latent_energy = latent_energy
        self.z_shape = z_shape
        self.inner_x_shape = x_shape  # not Energy.x_shape: x here packs (z, x)
        self.dz = math.prod(z_shape)
        self.y_shape = latent_energy.y_shape

    def _unpack(self, cond: Tensor) -> tuple[Tensor, Tensor | None]:
        z = cond[:, : self.dz].reshape(-1, *self.z_shape)
        shape = self.inner_x_shape
        x = None if shape is None else cond[:, self.dz :].reshape(-1, *shape)
        return z, x

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        assert x is not None
        z, xx = self._unpack(x)
        return self.latent_energy.forward(y, z, xx)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        assert x is not None
        z, xx = self._unpack(x)
        e, gy, _ = self.latent_energy.energy_and_grad(y, z, xx)
        return e, gy


def manifold(
    latent_energy: LatentEnergy,
    latent: LatentSet,
    x: Tensor | None = None,
    *,
    y_shape: tuple[int, ...] | None = None,
    num_starts: int = 4,
    solver: Solver | str | None = None,
    max_steps: int = 500,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Return the manifold of predictions :math:`\check y(z) = \arg\min_y E(x, y, z)`.

    For every z of a finite latent set (and every input x), the y that minimises the energy:
    in closed form through ``latent_energy.decode(z, x)`` when the energy has a decoder, by
    :func:`ebmlab.infer` over y with z fixed otherwise (the best of ``num_starts`` starts).

    Args:
        latent_energy: the :class:`ebmlab.LatentEnergy`.
        latent: a :class:`Grid`, :class:`Discrete` or :class:`MonteCarlo` set of z.
        x: conditioning inputs ``(B, *x_shape)`` or ``None`` (then B = 1).
        y_shape: event shape of y when the energy does not give it (inference path only).
        num_starts: inference starts per (x, z) pair.
        solver: inference solver (default Adam).
        max_steps: most inference steps.
        generator: random source of the inference starts.

    Returns:
        ``(B, |Z|, *y_shape)``: row b, column k is the prediction for ``x[b]`` and the k-th
        point of ``latent.points()``.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 4, periodic=True)
        >>> (eb.manifold(eb.energies.Ellipse(), grid)[0].round(decimals=6) + 0.0).tolist()
        [[2.0, 0.0], [0.0, 1.5], [-2.0, 0.0], [0.0, -1.5]]
    """
    if not isinstance(latent_energy, LatentEnergy):
        raise TypeError(
            f"latent_energy must be an ebmlab.LatentEnergy; got {type(latent_energy).__name__}"
        )
    if not isinstance(latent, LatentSet):
        raise TypeError(
            "latent must be a finite set (eb.latent.Grid, Discrete or MonteCarlo); got "
            f"{type(latent).__name__}"
        )
    if x is not None:
        check_tensor(x, "x")
    dtype, device = reference(x, latent_energy)
    z = latent.points(dtype=dtype, device=device)
    n, b = z.shape[0], 1 if x is None else x.shape[0]
    zz = z.unsqueeze(0).expand(b, *z.shape).reshape(b * n, *z.shape[1:])
    xx = None if x is None else x.repeat_interleave(n, dim=0)  # (B, ..) -> (B*N, ..)
    decode = getattr(latent_energy, "decode", None)
    if decode is not None:
        with torch.no_grad():
            y = decode(zz, xx)
        return y.reshape(b, n, *y.shape[1:])
    shape = y_shape or latent_energy.y_shape
    if shape is None:
        raise ValueError("y_shape is needed: pass y_shape=... or give the energy a y_shape")
    shape = tuple(int(s) for s in shape)
    x_shape = None if x is None else tuple(x.shape[1:])
    cond = zz.reshape(b * n, -1)
    if xx is not None:
        cond = torch.cat([cond, xx.reshape(b * n, -1).to(dtype)], 1)
    fixed = _FixedLatent(latent_energy, tuple(z.shape[1:]), x_shape)
    res = infer(fixed, cond, y_shape=shape, num_starts=num_starts, solver=solver,
                max_steps=max_steps, generator=generator)
    return res.best.reshape(b, n, *shape)
