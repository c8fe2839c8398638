"""What every kernel shares: hyper-parameter checks, the validated ``init`` and adaptation hooks."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from ebmlab._checks import (
    check_batch,
    check_beta,
    check_positive,
    check_target_acceptance,
    check_tensor,
)
from ebmlab.domain import Box, check_box
from ebmlab.energy import Energy
from ebmlab.samplers.state import State

# check_target_acceptance lives in ebmlab._checks; the name stays importable from here.
__all__ = ["Kernel", "noise_like", "check_target_acceptance", "check_energy_at"]


def _reference_tensor(energy: Energy) -> Tensor | None:
    for t in (*energy.parameters(), *energy.buffers()):
        if t.is_floating_point():
            return t
    return None


def check_energy_at(energy: Energy, y0: Tensor, x: Tensor | None = None) -> None:
    """Refuse a ``y0`` whose dtype or device differs from the energy's, and a bad energy output.

    Called once by the kernels' ``init`` (never per step): the energy's first floating
    parameter or buffer, if any, must share ``y0``'s dtype and device (nothing is silently
    cast), and ``energy(y0, x)`` must return a floating tensor of shape ``(chains,)`` in
    ``y0``'s dtype.

    Raises:
        TypeError: on a dtype mismatch or an output that is not a floating tensor.
        ValueError: on a device mismatch or an output of the wrong shape.
    """
    ref = _reference_tensor(energy)
    if ref is not None and ref.dtype != y0.dtype:
        raise TypeError(
            f"y0 has dtype {y0.dtype} but {type(energy).__name__}'s parameters are {ref.dtype}; "
            f"nothing is cast silently: pass y0.to({ref.dtype}) or convert the energy "
            f"(energy.to({y0.dtype}))"
        )
    if ref is not None and ref.device != y0.device:
        raise ValueError(
            f"y0 is on {y0.device} but {type(energy).__name__}'s parameters are on "
            f"{ref.device}; move one of them"
        )
    with torch.no_grad():
        out = energy(y0, x)  # the validating call: a (chains,) floating tensor
    if out.dtype != y0.dtype:
        raise TypeError(
            f"{type(energy).__name__} returned dtype {out.dtype} for y0 of dtype {y0.dtype}; "
            "the energy must compute in y0's dtype (nothing is cast silently)"
        )


class Kernel:
    """Common base of the sampling kernels (a thin mixin, not a hierarchy to extend).

    Subclasses set ``step_size``, ``beta``, ``domain`` and ``target_acceptance`` in
    ``__init__`` (validated there) and precompute their constants in :meth:`_setup`, which is
    called again by :meth:`with_step_size` during adaptation.
    """

    step_size: Any
    beta: float
    domain: Box | None
    target_acceptance: float | None = None

    def _init_common(
        self, step_size: float, beta: float, domain: Box | None
    ) -> None:
        self.step_size = check_positive(step_size, "step_size")
        self.beta = check_beta(beta)
        self.domain = check_box(domain)

    def _setup(self) -> None:  # pragma: no cover - overridden
        pass

    def with_step_size(self, step_size: float | Tensor) -> Kernel:
        """Return a copy with another step size (a number or a 0-dim tensor, unvalidated).

        Used by the step-size adaptation of :func:`ebmlab.sample`, which keeps the step size
        on the device as a tensor so that adapting needs no host synchronisation.
        """
        new = copy.copy(self)
        new.step_size = step_size
        new._setup()
        return new

    def _bounds(self, like: Tensor) -> tuple[Tensor, Tensor] | None:
        return None if self.domain is None else self.domain.bounds(like)

    def init(self, y0: Tensor, energy: Energy, x: Tensor | None = None) -> State:
        """Return the state at ``y0`` ``(chains, *y_shape)``, with energy and gradient cached.

        Raises:
            TypeError: if ``y0`` is not a floating tensor or ``energy`` not an ``eb.Energy``.
            ValueError: if ``y0``'s shape disagrees with the energy's ``y_shape`` or ``x``'s
                batch size, or ``y0`` lies outside the kernel's ``domain``.
        """
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an eb.Energy; got {type(energy).__name__}")
        check_tensor(y0, "y0")
        energy.check_y_shape(y0, "y0")
        check_batch(y0, x, y_name="y0")
        if self.domain is not None:
            if tuple(y0.shape[1:]) != self.domain.shape:
                raise ValueError(
                    f"y0 has shape {tuple(y0.shape)}; the domain expects "
                    f"(chains, {', '.join(map(str, self.domain.shape))})"
                )
            if not bool(self.domain.contains(y0).all()):
                raise ValueError("y0 must lie inside the sampler's domain; some rows are outside")
        if y0.shape[0] == 0:
            raise ValueError(f"y0 must hold at least one chain; got shape {tuple(y0.shape)}")
        y0 = y0.detach()
        check_energy_at(energy, y0, x)
        e, g = energy.energy_and_grad(y0, x)
        if tuple(g.shape) != tuple(y0.shape) or g.dtype != y0.dtype:
            raise ValueError(
                f"{type(energy).__name__}.energy_and_grad returned a gradient of shape "
                f"{tuple(g.shape)} and dtype {g.dtype}; expected y0's {tuple(y0.shape)}, "
                f"{y0.dtype}"
            )
        return State(y0, e, g)

    def with_mass(self, mass: float | Tensor) -> Kernel:
        """Return a copy with another (diagonal) mass matrix, unvalidated.

        ``mass`` is a number, a tensor of shape ``y_shape``, or one row per chain
        ``(chains, *y_shape)``; used by the mass-matrix adaptation of :func:`ebmlab.sample`.
        """
        new = copy.copy(self)
        new.mass = mass
        new._setup()
        return new

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_")
        )
        return f"{type(self).__name__}({params})"


def noise_like(y: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``y``."""
    return torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
