"""The sampling loop of ``eb.sample``: compiled or lean steps, divergence checks, what is kept."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ebmlab._compile import compiled
from ebmlab.energy import Energy

__all__ = [
    "run_steps",
    "compiled_step",
    "ReducedPrecisionGrad",
    "GRAD_DTYPES",
    "DEFAULT_CHECK_EVERY",
]

# The reduced precisions grad_dtype accepts.
GRAD_DTYPES = (torch.bfloat16, torch.float16)
# Kernels with a costly divergence check (Langevin) run it every this many steps by default.
DEFAULT_CHECK_EVERY = 10


class ReducedPrecisionGrad(Energy):
    r"""An energy whose ``energy_and_grad`` runs under ``torch.autocast`` at ``dtype``.

    Matrix products (and the other ops autocast lowers) run in ``dtype``; the results are
    cast back to the input's dtype, so states, energies and accept/reject arithmetic stay in
    the input dtype. Float64 inputs are left alone by autocast (they stay float64). The
    validated call ``energy(y, x)`` is the wrapped energy's, in full precision.

    Args:
        energy: the energy to wrap. dtype: ``torch.bfloat16`` or ``torch.float16``.
    """

    def __init__(self, energy: Energy, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = energy
        self.dtype = dtype
        self.y_shape = energy.y_shape
        self.x_shape = energy.x_shape

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        return self.inner(y, x)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with torch.autocast(y.device.type, dtype=self.dtype):
            e, g = self.inner.energy_and_grad(y, x)
        return e.to(y.dtype), g.to(y.dtype)


def compiled_step(kernel: Any, mode: str | None) -> Callable | None:
    """Return the kernel's step with its ``advance`` compiled, or ``None`` for eager.

    ``None`` also (with a ``UserWarning``) for a kernel without ``draw`` and ``advance``.
    """
    if mode is None:
        return None
    name = type(kernel).__name__
    if not (callable(getattr(kernel, "draw", None)) and callable(getattr(kernel, "advance", None))):
        warnings.warn(
            f"compile={mode!r}: the {name} step cannot be compiled (Langevin, MALA and HMC "
            f"steps can); running eager",
            UserWarning,
            stacklevel=3,
        )
        return None
    advance = compiled(kernel.advance, mode=mode, what=f"{name} step")
    draw = kernel.draw

    def step(
        state: Any, energy: Energy, x: Tensor | None, *, generator: torch.Generator | None
    ) -> tuple[Any, Any]:
        # The random numbers are drawn eagerly, in the kernel's order: the same stream as
        # the eager step, and no graph break inside the compiled region.
        return advance(state, draw(state.position, generator), energy, x)

    return step


def _is_bad(state: Any) -> Tensor:
    """Rows whose energy or position is not finite, ``(chains,)``."""
    position = state.position
    return ~(torch.isfinite(state.energy) & torch.isfinite(position).flatten(1).all(1))


def run_steps(
    kernel: Any,
    state: Any,
    energy: Energy,
    x: Tensor | None,
    num_steps: int,
    *,
    thin: int,
    keep: str,
    check_every: int,
    fast: Callable | None,
    generator: torch.Generator | None,
    steps: Callable[[int, str], Any],
    desc: str = "sampling",
) -> tuple[Any, list[Tensor], list[Tensor], list[Any], Tensor | None]:
    """Run ``num_steps`` steps after burn-in; return the final state, what was kept and the
    divergent steps per chain.

    Every ``thin``-th state is kept (``keep="last"``: only the last of them, ``"none"``:
    nothing, for a burn-in). ``fast`` is the step from :func:`compiled_step`. A kernel with a
    ``lean_step`` (Langevin without a domain) makes its divergence check only every
    ``check_every`` steps and
    at the last step; a check that finds a chain non-finite flags that chain as divergent in
    every kept sample (and counts every step) since the previous check, so a NaN sample is
    never reported as valid (a non-finite Langevin chain stays non-finite). A compiled run
    always uses the checking step (the check is fused into the compiled graph).
    """
    step = fast or kernel.step
    lean = getattr(kernel, "lean_step", None) if check_every > 1 and fast is None else None
    if getattr(kernel, "domain", None) is not None:
        # With walls a step can be unstable and stay finite (reflection hides it), and only
        # the per-step overshoot check sees it: check every step.
        lean = None
    positions: list[Tensor] = []
    energies: list[Tensor] = []
    infos: list[Any] = []
    pending: list[int] = []  # kept samples made since the last check
    unchecked = 0  # lean steps since the last check
    divergent = None
    last = num_steps - 1
    for t in steps(num_steps, desc):
        is_check = lean is None or (t + 1) % check_every == 0 or t == last
        state, info = (step if is_check else lean)(state, energy, x, generator=generator)
        if is_check:
            flag = getattr(info, "is_divergent", None)
            if lean is not None:
                bad = _is_bad(state)
                flag = bad if flag is None else flag | bad
                info = info._replace(is_divergent=flag)
                if unchecked:
                    divergent = bad.long() * unchecked if divergent is None else (
                        divergent.add_(bad.long(), alpha=unchecked))
                for i in pending:
                    infos[i] = infos[i]._replace(is_divergent=infos[i].is_divergent | bad)
                pending, unchecked = [], 0
            if flag is not None:
                divergent = flag.long() if divergent is None else divergent + flag
        else:
            unchecked += 1
        if t % thin == thin - 1 and keep != "none":  # every step when thin == 1
            if keep == "last":
                positions, energies, infos, pending = [], [], [], []
            if not is_check:
                pending.append(len(infos))
            positions.append(state.position)
            energies.append(state.energy)
            infos.append(info)
    return state, positions, energies, infos, divergent
