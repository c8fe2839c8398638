"""The one inference gate: every argument of a multi-start problem checked once, in one place.

:func:`check_problem` is called by :func:`ebmlab.infer`, by joint (y, z) inference and by
:func:`ebmlab.training.distributed.sharded_infer`; the loop that follows runs unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ebmlab._checks import (
    check_generator,
    check_positive,
    check_positive_int,
    check_tensor,
    reference,
)
from ebmlab.domain import Box, check_box
from ebmlab.inference.multistart import resolve_solver
from ebmlab.inference.solver import Solver

__all__ = ["Problem", "check_problem", "event_shape"]


@dataclass(frozen=True)
class Problem:
    """A checked multi-start problem: B inputs × S starts of event shape ``shape``.

    Attributes:
        b: number of inputs (1 without ``x``).
        s: starts per input.
        shape: event shape of the minimised variable.
        dtype, device: of the starts (those of ``x`` when it is given).
        merge_tol: distance under which two end points are one minimum.
        solver: the solver instance.
        auto: ``num_starts="auto"``: ``s`` is the first round, more follow up to
            ``max_starts`` until the unseen probability is below ``1 - coverage``.
    """

    b: int
    s: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    merge_tol: float
    solver: Solver
    auto: bool = False
    max_starts: int = 65536
    coverage: float = 0.99


def event_shape(
    given: tuple[int, ...] | None,
    domain: Box | None,
    own: tuple[int, ...] | None,
    *,
    name: str = "y_shape",
    domain_name: str = "domain",
    owner: str = "the energy",
) -> tuple[int, ...]:
    """Return the event shape from ``given``, else the domain's, else the energy's ``own``.

    Raises:
        ValueError: no shape can be found, or the three sources disagree.
    """
    shape = given or (domain.shape if domain is not None else own)
    if shape is None:
        raise ValueError(
            f"{name} is needed: pass {name}=..., a {domain_name}, or an energy with {name}"
        )
    shape = tuple(int(v) for v in shape)
    if domain is not None and domain.shape != shape:
        raise ValueError(f"{domain_name} has shape {domain.shape} but {name} is {shape}")
    if own is not None and tuple(own) != shape:
        raise ValueError(f"{name} is {shape} but {owner} expects {tuple(own)}")
    return shape


def check_problem(
    energy: nn.Module,
    x: Tensor | None = None,
    *,
    y_shape: tuple[int, ...] | None = None,
    num_starts: int | str | None = None,
    domain: Box | None = None,
    solver: Solver | str | None = None,
    generator: torch.Generator | None = None,
    init: Tensor | None = None,
    max_steps: int = 500,
    gtol: float = 1e-5,
    ftol: float = 1e-9,
    check_every: int = 10,
    merge_tol: float | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    max_starts: int = 65536,
    coverage: float = 0.99,
) -> Problem:
    """Check the arguments that :func:`ebmlab.infer` and its variants share.

    The arguments mean what they mean in :func:`ebmlab.infer`; ``energy`` is read only for
    its ``y_shape``, its name and its parameters (the dtype/device reference without ``x``).
    The dtype and device are those of ``x`` when it is given, else
    :func:`ebmlab._checks.reference` of ``init`` and the energy's parameters.

    Returns:
        A :class:`Problem`.

    Raises:
        ValueError: bad shapes, sizes or tolerances. TypeError: a wrong type.

    Example:
        >>> import torch, ebmlab as eb
        >>> p = check_problem(eb.energies.DoubleWell(2), torch.zeros(3, 1), num_starts=4)
        >>> p.b, p.s, p.shape, p.merge_tol
        (3, 4, (2,), 0.01)
    """
    check_positive_int(max_steps, "max_steps", minimum=0)
    check_positive_int(check_every, "check_every")
    check_positive(gtol, "gtol")
    check_positive(ftol, "ftol")
    check_generator(generator)
    check_box(domain)
    shape = event_shape(
        y_shape, domain, getattr(energy, "y_shape", None), owner=type(energy).__name__
    )
    auto = isinstance(num_starts, str)
    if auto and num_starts != "auto":
        raise ValueError(f"num_starts must be an int >= 1 or 'auto'; got {num_starts!r}")
    max_starts = check_positive_int(max_starts, "max_starts")
    coverage = check_positive(coverage, "coverage")
    if not coverage < 1:
        raise ValueError(f"coverage must be in (0, 1); got {coverage}")
    if auto:
        if init is not None:
            raise ValueError("num_starts='auto' draws its own starts; drop init=")
        num_starts = min(32, max_starts)
    if num_starts is None:
        has_rows = isinstance(init, Tensor) and init.ndim > len(shape)
        num_starts = init.shape[init.ndim - len(shape) - 1] if has_rows else 32
    s = check_positive_int(num_starts, "num_starts")
    if x is not None:
        check_tensor(x, "x")
        b = x.shape[0]
        if b == 0:
            raise ValueError(
                f"x is empty (shape {tuple(x.shape)}); expected at least one input (B >= 1)"
            )
        x_shape = getattr(energy, "x_shape", None)
        if x_shape is not None and tuple(x.shape[1:]) != tuple(x_shape):
            raise ValueError(
                f"x has shape {tuple(x.shape)}; {type(energy).__name__} expects "
                f"(B, *x_shape) = (B, {', '.join(map(str, x_shape))})"
            )
        the_dtype, the_device = reference(x)
    else:
        b = 1
        the_dtype, the_device = reference(init, energy, dtype=dtype, device=device)
    source = "x" if x is not None else ("dtype" if dtype is not None else "the energy")
    if the_dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{source} gives the dtype {the_dtype}; infer computes in float32 or float64 "
            "(half precision cannot resolve minima): cast it, e.g. x.float()"
        )
    if the_device.type == "meta":
        raise ValueError(f"{source} is on the meta device (no data); pass a real tensor")
    if merge_tol is None:
        merge_tol = 1e-3 * domain.diameter if domain is not None else 1e-2
    merge_tol = check_positive(merge_tol, "merge_tol")
    return Problem(
        b, s, shape, the_dtype, the_device, merge_tol, resolve_solver(solver), auto, max_starts,
        coverage,
    )
