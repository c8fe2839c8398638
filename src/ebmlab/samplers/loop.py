"""The sampling loop of ``eb.sample``: compiled or lean steps, divergence checks, what is kept."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ebmlab._compile import compiled
from ebmlab.energy import Energy
from ebmlab.samplers.state import Info, State

__all__ = [
    "run_steps",
    "compiled_step",
    "CompiledSteps",
    "block_size",
    "BLOCK_GRADIENTS",
    "ReducedPrecisionGrad",
    "GRAD_DTYPES",
    "DEFAULT_CHECK_EVERY",
]

# The reduced precisions grad_dtype accepts.
GRAD_DTYPES = (torch.bfloat16, torch.float16)
# Kernels with a costly divergence check (Langevin) run it every this many steps by default.
DEFAULT_CHECK_EVERY = 10
# A compiled call runs this many gradient evaluations' worth of steps (see block_size).
BLOCK_GRADIENTS = 8


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


def block_size(kernel: Any) -> int:
    """The steps per compiled call: ``BLOCK_GRADIENTS`` gradients' worth, at least one step.

    Langevin and MALA (one gradient per step) run ``BLOCK_GRADIENTS`` = 8 steps per call; HMC
    with L leapfrog steps ``8 // L`` (one for L >= 5, whose step already amortises the call).

    Example:
        >>> import ebmlab as eb
        >>> block_size(eb.samplers.MALA(0.1)), block_size(eb.samplers.HMC(0.1, 3))
        (8, 2)
    """
    return max(1, BLOCK_GRADIENTS // int(getattr(kernel, "num_leapfrog", 1)))


class CompiledSteps:
    """The compiled steps of a kernel: one step (``__call__``) and ``block`` steps per call.

    Built by :func:`compiled_step`. The random numbers are drawn eagerly with the kernel's
    ``draw``, in the kernel's order (a block draws its steps' numbers one step after the
    other before the call), so the chains equal the eager ones to float rounding; only the
    deterministic ``advance`` runs compiled. :meth:`run_block` runs ``block`` steps in one
    compiled call (unrolled in one graph: Python, guard and launch overhead are paid once
    per block) and returns each step's ``(state, info)``.
    """

    def __init__(self, kernel: Any, mode: str, block: int) -> None:
        name = type(kernel).__name__
        self.block = block
        self._draw = kernel.draw
        self._advance = kernel.advance
        self._one = compiled(kernel.advance, mode=mode, what=f"{name} step")
        self._many = (
            compiled(self._advance_block, mode=mode, what=f"{name} step")
            if block > 1 else None
        )

    def __call__(
        self, state: Any, energy: Energy, x: Tensor | None, *, generator: torch.Generator | None
    ) -> tuple[Any, Any]:
        return self._one(state, self._draw(state.position, generator), energy, x)

    def _advance_block(
        self, state: Any, draws: list[Any], energy: Energy, x: Tensor | None
    ) -> list[tuple[Any, Any]]:
        made = []
        for d in draws:
            state, info = self._advance(state, d, energy, x)
            made.append((state, info))
        return made

    def run_block(
        self, state: Any, energy: Energy, x: Tensor | None, *, generator: torch.Generator | None
    ) -> list[tuple[Any, Any]]:
        """Run ``block`` steps in one compiled call; every step's ``(state, info)``."""
        if self._many is None:
            return [self(state, energy, x, generator=generator)]
        y = state.position
        draws = [self._draw(y, generator) for _ in range(self.block)]
        return self._many(state, draws, energy, x)


def compiled_step(kernel: Any, mode: str | None, block: int | None = None) -> CompiledSteps | None:
    """Return the kernel's compiled steps, or ``None`` for eager.

    ``block``: steps per compiled call (default :func:`block_size`; 1: one step per call).
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
    return CompiledSteps(kernel, mode, block_size(kernel) if block is None else block)


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
    fast: CompiledSteps | None,
    generator: torch.Generator | None,
    steps: Callable[[int, str], Any],
    desc: str = "sampling",
) -> tuple[Any, list[Tensor], list[Tensor], list[Any], Tensor | None]:
    """Run ``num_steps`` steps after burn-in; return the final state, what was kept and the
    divergent steps per chain.

    Every ``thin``-th state is kept (``keep="last"``: only the last of them, ``"none"``:
    nothing, for a burn-in). ``fast`` is the result of :func:`compiled_step`: its blocks run
    ``fast.block`` steps per compiled call, and the steps left over at the end (fewer than a
    block) run eagerly. A kernel with a ``lean_step`` (Langevin without a domain) makes its
    divergence check only every ``check_every`` steps and at the last step, and draws the
    noise of the steps between two checks in one call where that gives the same numbers
    (``draw_block``); a check that finds a chain non-finite flags that chain as divergent in
    every kept sample (and counts every step) since the previous check, so a NaN sample is
    never reported as valid (a non-finite Langevin chain stays non-finite). A compiled run
    always uses the checking step (the check is fused into the compiled graph). A kernel
    with ``has_lean_loop`` (Langevin without walls) runs in :func:`_run_lean`, which makes
    the same moves with less work per step.
    """
    if fast is None and check_every > 1 and getattr(kernel, "has_lean_loop", False):
        return _run_lean(kernel, state, energy, x, num_steps, thin=thin, keep=keep,
                         check_every=check_every, generator=generator, steps=steps, desc=desc)
    lean = getattr(kernel, "lean_step", None) if check_every > 1 and fast is None else None
    if getattr(kernel, "domain", None) is not None:
        # With walls a step can be unstable and stay finite (reflection hides it), and only
        # the per-step overshoot check sees it: check every step.
        lean = None
    draw_block = getattr(kernel, "draw_block", None) if lean is not None else None
    block = fast.block if fast is not None and fast.block > 1 else 0
    positions: list[Tensor] = []
    energies: list[Tensor] = []
    infos: list[Any] = []
    pending: list[int] = []  # kept samples made since the last check
    unchecked = 0  # lean steps since the last check
    divergent = None
    last = num_steps - 1
    made: list[tuple[Any, Any]] = []  # steps made ahead by a compiled block
    noises: tuple[Tensor, ...] | None = ()  # noises drawn ahead for the lean steps
    for t in steps(num_steps, desc):
        is_check = lean is None or (t + 1) % check_every == 0 or t == last
        if made:
            state, info = made.pop()
        elif block and t + block <= num_steps:
            made = fast.run_block(state, energy, x, generator=generator)[::-1]
            state, info = made.pop()
        elif noises is not None and draw_block is not None:
            if not noises:
                span = min(check_every - t % check_every, num_steps - t)
                noises = draw_block(state.position, span, generator)
                noises = None if noises is None else list(noises[::-1])
            if noises is not None:
                state, info = kernel.advance(state, (noises.pop(),), energy, x, check=is_check)
            else:
                state, info = (kernel.step if is_check else lean)(
                    state, energy, x, generator=generator)
        elif fast is not None and not block:
            state, info = fast(state, energy, x, generator=generator)
        else:  # eager steps (a compiled run's last steps, fewer than a block, too)
            state, info = (kernel.step if is_check else lean)(
                state, energy, x, generator=generator)
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


def _energy_and_grad(energy: Energy) -> Callable[..., tuple[Tensor, Tensor]]:
    """The energy's ``energy_and_grad``, or its constants-fixed form for one run (same numbers:
    ``GaussianMixture.frozen_energy_and_grad``)."""
    frozen = getattr(energy, "frozen_energy_and_grad", None)
    return frozen() if callable(frozen) else energy.energy_and_grad


def _run_lean(
    kernel: Any,
    state: Any,
    energy: Energy,
    x: Tensor | None,
    num_steps: int,
    *,
    thin: int,
    keep: str,
    check_every: int,
    generator: torch.Generator | None,
    steps: Callable[[int, str], Any],
    desc: str,
) -> tuple[Any, list[Tensor], list[Tensor], list[Any], Tensor | None]:
    """:func:`run_steps` for a kernel with ``has_lean_loop`` (Langevin without walls).

    The same moves, random numbers and kept rows as the step-by-step loop, with the per-step
    work cut to the move and the energy: positions, energies and gradients are kept as
    plain tensors between checks (no State or Info per step), the energy's constants are
    fixed for the run, the noise between two checks is drawn in one call where that gives
    the same numbers, and the kept rows between checks share one constant Info.
    """
    eg = _energy_and_grad(energy)
    move, draw, draw_block = kernel.move, kernel.draw, kernel.draw_block
    y, e, g = state
    rate = torch.ones_like(e)
    accepted = torch.ones(e.shape, dtype=torch.bool, device=e.device)
    never = ~accepted
    divergent = torch.zeros(e.shape, dtype=torch.long, device=e.device)
    positions: list[Tensor] = []
    energies: list[Tensor] = []
    infos: list[Any] = []
    pending = 0  # kept rows since the last check (the last ones of infos)
    keeping = keep != "none"
    noises: list[Tensor] = []
    per_step = False  # the noise is drawn step by step (draw_block cannot)
    span, next_check = 0, -1
    for t in steps(num_steps, desc):
        if t > next_check:  # a new span: the steps up to and including the next check
            span = min(check_every - t % check_every, num_steps - t)
            next_check = t + span - 1
            if not per_step:
                block = draw_block(y, span, generator)
                per_step = block is None
                noises = [] if per_step else list(block[::-1])
        noise = draw(y, generator)[0] if per_step else noises.pop()
        if t != next_check:
            y = move(y, g, noise)
            e, g = eg(y, x)
            info = None
        else:
            y0, e0 = y, e
            y = move(y, g, noise)
            e, g = eg(y, x)
            flag, bad = kernel.lean_check(y0, e0, y, e, g, noise)
            if span > 1:  # the unchecked steps of a chain found non-finite count too
                divergent.add_(bad, alpha=span - 1)
            divergent.add_(flag)
            for i in range(len(infos) - pending, len(infos)):
                infos[i] = Info(rate, accepted, bad)  # never | bad
            pending = 0
            info = Info(rate, accepted, flag)
        if keeping and t % thin == thin - 1:
            if keep == "last":
                positions, energies, infos, pending = [], [], [], 0
            positions.append(y)
            energies.append(e)
            if info is None:
                infos.append(Info(rate, accepted, never))
                pending += 1
            else:
                infos.append(info)
    return State(y, e, g), positions, energies, infos, divergent
