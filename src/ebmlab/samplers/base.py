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
__all__ = ["Kernel", "noise_like", "check_target_acceptance"]


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
        y0 = y0.detach()
        e, g = energy.energy_and_grad(y0, x)
        return State(y0, e, g)

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_")
        )
        return f"{type(self).__name__}({params})"


def noise_like(y: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``y``."""
    return torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
