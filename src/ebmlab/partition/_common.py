"""Helpers shared by the log-partition estimators (validation, batched evaluation, sampling)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebmlab._checks import check_beta, check_generator, check_tensor
from ebmlab._checks import reference as _reference
from ebmlab.domain import Box, check_box
from ebmlab.energy import Energy

__all__ = [
    "check_inputs",
    "reference",
    "evaluate",
    "sample_distribution",
    "check_finite_energies",
]


def check_inputs(
    energy: object,
    x: Tensor | None,
    beta: float,
    domain: Box | None,
    generator: torch.Generator | None,
    *,
    is_domain_required: bool,
) -> float:
    """Validate the common arguments of an estimator's public entry point; returns beta."""
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
    if x is not None:
        check_tensor(x, "x")
    if domain is None and is_domain_required:
        raise ValueError("domain must be an ebmlab.Box; got None")
    check_box(domain, allow_none=not is_domain_required)
    if domain is not None and energy.y_shape is not None and tuple(energy.y_shape) != domain.shape:
        raise ValueError(
            f"domain has shape {domain.shape} but {type(energy).__name__} expects "
            f"y_shape {tuple(energy.y_shape)}"
        )
    check_generator(generator)
    return check_beta(beta)


def reference(
    energy: Energy, x: Tensor | None, domain: Box | None
) -> tuple[torch.dtype, torch.device]:
    """Return the dtype and device to compute in: x's, else the energy's parameters', else default.

    The library's one rule (:func:`ebmlab._checks.reference`), with the domain's dtype (on the
    CPU) as the last reference; the domain itself is moved to the device.
    """
    return _reference(x, energy, None if domain is None else domain.low.cpu())


def evaluate(energy: Energy, y: Tensor, x: Tensor | None) -> Tensor:
    """Evaluate F on ``y`` (B, C, *y_shape) against inputs ``x`` (B, *x_shape); returns (B, C).

    Each of the C points of row b is paired with ``x[b]``. Calls the validating ``energy(...)``:
    this runs once per chunk of many points, never per sampler step.
    """
    b, c = y.shape[:2]
    rows = y.reshape(b * c, *y.shape[2:])  # (B, C, *y_shape) -> (B*C, *y_shape)
    x_rows = None
    if x is not None:
        x_rows = x.unsqueeze(1).expand(b, c, *x.shape[1:]).reshape(b * c, *x.shape[1:])
    return energy(rows, x_rows).reshape(b, c)


def check_finite_energies(bad: Tensor, owner: str) -> None:
    """Raise if any energy was NaN or -inf (``bad`` counts them; one synchronisation)."""
    count = int(bad)
    if count:
        raise ValueError(
            f"{owner}: the energy returned {count} non-finite value(s) (NaN or -inf); "
            "expected finite values or +inf (zero probability)"
        )


def sample_distribution(
    distribution: Distribution, shape: tuple[int, ...], generator: torch.Generator | None
) -> Tensor:
    """Draw ``distribution.sample(shape)`` reproducibly from ``generator``.

    ``torch.distributions`` samplers take no generator, so a seed is drawn from ``generator``
    and the global generator of ``generator``'s device is seeded inside ``fork_rng``, which
    restores the global state afterwards.
    """
    if generator is None:
        return distribution.sample(torch.Size(shape))
    device = generator.device
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=device))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if device.type == "cuda":
            torch.cuda.manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)
        return distribution.sample(torch.Size(shape))
