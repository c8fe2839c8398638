"""``compile=`` for training: the negatives' Langevin steps as one compiled block per call.

:class:`ebmlab.training.negatives.Sampled` with ``compile=`` (or ``eb.fit(..., compile=)``)
runs its ``num_steps`` built-in Langevin steps through :func:`langevin_block`, compiled once by
:func:`ebmlab._compile.compiled`; the noise is drawn eagerly beforehand, in the eager loop's
order, so the random stream is the eager one. The loss and the optimiser step stay eager, and a
loss that differentiates the energy twice (score matching, a gradient penalty: PyTorch cannot
compile double backward) makes :func:`check_fit_compile` warn once and train eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ebmlab._compile import check_compile, compiled
from ebmlab.energy import Energy
from ebmlab.inference.compiled_loop import functional_energy_and_grad

__all__ = [
    "DOUBLE_BACKWARD_LOSSES",
    "langevin_block",
    "traceable_energy_and_grad",
    "compiled_langevin",
    "check_fit_compile",
    "draw_noise",
]

# Losses and regularisers that differentiate the energy w.r.t. y inside the loss and then
# backpropagate through that gradient (double backward), which torch.compile does not support.
DOUBLE_BACKWARD_LOSSES = frozenset(
    {"exact_score_matching", "sliced_score_matching", "denoising_score_matching",
     "gradient_penalty"}
)


def langevin_block(
    energy_and_grad: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]],
    project: Callable[[Tensor], Tensor] | None,
    y: Tensor,
    x: Tensor | None,
    noise: Tensor,
    step_size: float,
    noise_std: float,
) -> Tensor:
    r"""Run ``noise.shape[0]`` Langevin steps :math:`y' = P(y - h\nabla F + s\,\xi_t)`.

    ``noise`` is (T, *y.shape), the standard normal draws of the T steps; ``project`` is the
    domain's projection or ``None``. The same arithmetic, in the same order, as the eager loop
    of :class:`ebmlab.training.negatives.Sampled`.

    Example:
        >>> import torch
        >>> grad = lambda y, x: (None, 2 * y)  # F = |y|^2
        >>> langevin_block(grad, None, torch.ones(1, 1), None, torch.zeros(2, 1, 1), 0.25, 0.0)
        tensor([[0.2500]])
    """
    for xi in noise.unbind(0):
        _, g = energy_and_grad(y, x)
        y = y - step_size * g + noise_std * xi
        if project is not None:
            y = project(y)
    return y


def traceable_energy_and_grad(
    energy: Any,
) -> Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]]:
    """The energy's ``energy_and_grad``, by ``torch.func.grad`` where it is autograd's default."""
    if isinstance(energy, Energy) and type(energy).energy_and_grad is Energy.energy_and_grad:
        return functional_energy_and_grad(energy.forward)
    return energy.energy_and_grad


def compiled_langevin(mode: str) -> Callable:
    """Return :func:`langevin_block` through :func:`ebmlab._compile.compiled` in ``mode``."""
    return compiled(langevin_block, mode=mode, what="Langevin negatives steps")


def check_fit_compile(
    compile: bool | str, loss_name: str, regularizer_name: str | None, negatives: object
) -> str | None:
    """Check ``eb.fit``'s ``compile`` and hand the mode to the negatives; return the mode.

    One ``UserWarning`` (and eager training) when the loss or regulariser needs double
    backward, or when the negatives have nothing to compile (no built-in Langevin steps).

    Example:
        >>> import warnings, ebmlab as eb
        >>> neg = eb.training.negatives.Sampled(num_steps=2, step_size=0.01)
        >>> check_fit_compile(True, "contrastive_divergence", None, neg), neg.compile_mode
        ('default', 'default')
        >>> with warnings.catch_warnings(record=True) as w:
        ...     warnings.simplefilter("always")
        ...     check_fit_compile(True, "exact_score_matching", None, None)
        >>> "double backward" in str(w[0].message)
        True
    """
    mode = check_compile(compile)
    if mode is None:
        return None
    twice = [n for n in (loss_name, regularizer_name) if n in DOUBLE_BACKWARD_LOSSES]
    if twice:
        warnings.warn(
            f"compile={compile!r}: could not compile the training step ({twice[0]!r} "
            "differentiates the energy twice, and torch.compile does not support double "
            "backward); running eager",
            UserWarning,
            stacklevel=3,
        )
        return None
    use = getattr(negatives, "use_compile", None)
    if not callable(use) or not use(mode):
        why = "the loss uses no negatives" if negatives is None else (
            f"the negatives {type(negatives).__name__} have no built-in Langevin steps")
        warnings.warn(
            f"compile={compile!r}: nothing to compile ({why}); running eager",
            UserWarning,
            stacklevel=3,
        )
        return None
    return mode


def draw_noise(
    num_steps: int, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """(T, *like.shape) standard normal draws, one ``randn`` per step as the eager loop draws."""
    return torch.stack([
        torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        for _ in range(num_steps)
    ])
