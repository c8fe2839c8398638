"""Validation and reduction shared by the loss functionals (called once per call, not in loops)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab._checks import check_batch, check_same_device, check_tensor

__all__ = [
    "REDUCTIONS",
    "check_reduction",
    "reduce",
    "check_pair",
    "check_set",
    "check_nonnegative",
    "check_energy_callable",
    "prepare_y",
    "grad_y",
    "check_generator_device",
]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: object) -> str:
    """Return ``reduction`` if it is one of ``"mean"``, ``"sum"``, ``"none"``."""
    if not isinstance(reduction, str):
        raise TypeError(
            f"reduction must be a str, one of {REDUCTIONS}; got {type(reduction).__name__}"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return reduction


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """Average, sum or keep the per-example losses (the mean of none is refused)."""
    if reduction == "mean":
        if loss.numel() == 0:
            raise ValueError(
                f"the loss is over an empty batch (shape {tuple(loss.shape)}): its mean is "
                "undefined; pass at least one row, or reduction='sum'"
            )
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _same_dtype_device(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(
            f"{a_name} has dtype {a.dtype} but {b_name} has dtype {b.dtype}; "
            "expected equal dtypes (nothing is cast silently)"
        )
    check_same_device(a, b, a_name, b_name)


def check_pair(
    e_pos: object, e_neg: object, pos_name: str = "e_pos", neg_name: str = "e_neg"
) -> tuple[Tensor, Tensor]:
    """Validate positive and negative energies and align them for element-wise losses.

    ``e_neg`` has the shape of ``e_pos`` (one negative per positive) or that shape plus a
    trailing ``K`` (K negatives per positive); in the second case ``e_pos`` gains a trailing
    singleton dimension so the two broadcast pair by pair.
    """
    e_pos = check_tensor(e_pos, pos_name)
    e_neg = check_tensor(e_neg, neg_name)
    _same_dtype_device(e_pos, e_neg, pos_name, neg_name)
    if e_neg.shape == e_pos.shape:
        return e_pos, e_neg
    if e_neg.ndim == e_pos.ndim + 1 and e_neg.shape[:-1] == e_pos.shape:
        return e_pos.unsqueeze(-1), e_neg
    shape = tuple(e_pos.shape)
    raise ValueError(
        f"{neg_name} has shape {tuple(e_neg.shape)}; expected the shape of {pos_name}, {shape}, "
        f"or {shape + ('K',)} for K negatives per positive"
    )


def check_set(
    e_pos: object, e_all: object, pos_name: str = "e_pos", all_name: str = "e_all"
) -> tuple[Tensor, Tensor]:
    """Validate energies of the correct answer (S,) and of a set of answers (S, K)."""
    e_pos = check_tensor(e_pos, pos_name)
    e_all = check_tensor(e_all, all_name)
    _same_dtype_device(e_pos, e_all, pos_name, all_name)
    if e_all.ndim != e_pos.ndim + 1 or e_all.shape[:-1] != e_pos.shape or e_all.shape[-1] < 1:
        shape = tuple(e_pos.shape)
        raise ValueError(
            f"{all_name} has shape {tuple(e_all.shape)}; expected {shape + ('K',)} "
            f"(the energies of K >= 1 answers for each entry of {pos_name}, shape {shape})"
        )
    return e_pos, e_all


def check_nonnegative(value: object, name: str) -> float:
    """Return ``float(value)`` if it is a finite number ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return value


def check_energy_callable(energy: object) -> Callable[..., Tensor]:
    """Return ``energy`` if it can be called as ``energy(y, x)``."""
    if not callable(energy):
        raise TypeError(
            f"energy must be an eb.Energy or a callable energy(y, x) -> (B,); "
            f"got {type(energy).__name__}"
        )
    return energy


def prepare_y(y: object, x: Tensor | None) -> Tensor:
    """Validate ``y`` and ``x`` and return ``y`` as a tensor that autograd can differentiate at.

    A ``y`` that already requires grad is kept (its history stays in the graph); otherwise a
    detached leaf is made, so gradients reach the energy's parameters and ``x`` only.
    """
    y = check_tensor(y, "y")
    check_batch(y, x)
    if x is not None and x.dtype != y.dtype:
        raise TypeError(f"y has dtype {y.dtype} but x has dtype {x.dtype}; expected equal dtypes")
    return y if y.requires_grad else y.detach().requires_grad_(True)


def grad_y(out: Tensor, y: Tensor) -> Tensor:
    """Return :math:`\\nabla_y \\sum out`, keeping the graph so the result can be trained.

    An ``out`` that does not depend on ``y`` (a constant or linear piece) has a zero gradient,
    not an autograd error.
    """
    if not out.requires_grad:
        return torch.zeros_like(y)
    (g,) = torch.autograd.grad(out.sum(), y, create_graph=True, materialize_grads=True)
    return g


def check_generator_device(generator: torch.Generator | None, y: Tensor) -> None:
    """Raise if a generator lives on another kind of device than ``y`` (it could not draw)."""
    if generator is not None and generator.device.type != y.device.type:
        raise ValueError(
            f"generator is on {generator.device} but y is on {y.device}; pass a generator "
            f"created with torch.Generator(device={y.device.type!r})"
        )
