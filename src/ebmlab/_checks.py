"""Argument validation shared by the public entry points (never called inside hot loops)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "check_tensor",
    "check_batch",
    "check_same_device",
    "check_positive",
    "check_beta",
    "check_positive_int",
    "check_generator",
    "check_fraction",
    "check_target_acceptance",
    "reference",
]


def check_tensor(value: object, name: str, *, min_ndim: int = 1) -> Tensor:
    """Return ``value`` if it is a floating tensor with at least ``min_ndim`` dimensions."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype; got {value.dtype}")
    if value.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s) (batch first); "
            f"got shape {tuple(value.shape)}"
        )
    return value


def check_batch(y: Tensor, x: Tensor | None, *, y_name: str = "y", x_name: str = "x") -> None:
    """Check that ``x`` (if given) is a floating tensor with the same batch size and device."""
    if x is None:
        return
    check_tensor(x, x_name)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"batch sizes differ: {y_name} has {y.shape[0]} rows (shape {tuple(y.shape)}) but "
            f"{x_name} has {x.shape[0]} (shape {tuple(x.shape)}); expected equal first dimensions"
        )
    check_same_device(y, x, y_name, x_name)


def check_same_device(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    """Raise if two tensors live on different devices (nothing is moved silently)."""
    if a.device != b.device:
        raise ValueError(
            f"{a_name} is on {a.device} but {b_name} is on {b.device}; "
            "move them to the same device"
        )


def check_positive(value: float, name: str, *, allow_inf: bool = False) -> float:
    """Return ``float(value)`` if it is a positive number (finite unless ``allow_inf``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        bound = "> 0 (inf allowed)" if allow_inf else "a finite number > 0"
        raise ValueError(f"{name} must be {bound}; got {value}")
    return value


def check_beta(beta: float, *, allow_inf: bool = False) -> float:
    """Validate an inverse temperature."""
    return check_positive(beta, "beta", allow_inf=allow_inf)


def check_positive_int(value: int, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_generator(generator: object) -> torch.Generator | None:
    """Return ``generator`` if it is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None; got {type(generator).__name__}"
        )
    return generator


def check_fraction(value: float, name: str) -> float:
    """Return ``float(value)`` if it is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1]; got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1]; got {value!r}")
    return float(value)


def check_target_acceptance(value: float | None) -> float | None:
    """Return ``value`` if it is ``None`` or a probability in (0, 1)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"target_acceptance must be a number or None; got {type(value).__name__}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"target_acceptance must be in (0, 1); got {value}")
    return float(value)


def reference(
    *candidates: object,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.dtype, torch.device]:
    """Return the (dtype, device) that a computation follows: the one rule of the library.

    The first candidate that is a floating tensor (an input, a start, a parameter) gives the
    dtype and device; an explicit ``dtype``/``device`` overrides it; with no reference the dtype is
    ``torch.get_default_dtype()`` and the device the CPU. Modules and iterables of parameters may
    be passed: their first floating parameter is used.
    """
    ref = None
    for candidate in candidates:
        if isinstance(candidate, torch.nn.Module):
            candidate = next(
                (p for p in candidate.parameters() if p.is_floating_point()), None
            )
        if isinstance(candidate, Tensor) and candidate.is_floating_point():
            ref = candidate
            break
    the_dtype = dtype or (ref.dtype if ref is not None else torch.get_default_dtype())
    if device is not None:
        the_device = torch.device(device)
    else:
        the_device = ref.device if ref is not None else torch.device("cpu")
    return the_dtype, the_device
