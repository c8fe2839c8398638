"""``eb.inference.unroll``: K differentiable descent steps, for learning through inference.

(The module is ``unrolling`` so that importing it never shadows the function ``unroll``.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlab._checks import check_batch, check_positive, check_positive_int, check_tensor
from ebmlab.energy import Energy, check_energy_output

__all__ = ["unroll"]

UNROLL_SOLVERS = ("gd",)


def unroll(
    energy: Energy,
    y0: Tensor,
    x: Tensor | None = None,
    *,
    num_steps: int,
    step_size: float,
    solver: str = "gd",
) -> Tensor:
    r"""Return :math:`y_K` after K gradient steps on F, *with* the autograd graph.

    :math:`y_{k+1} = y_k - \eta \nabla_y F(x, y_k)`, each inner gradient taken with
    ``create_graph=True``, so a loss on :math:`y_K` back-propagates into the energy's
    parameters, into ``x`` and into ``y0`` (structured prediction energy networks, deep
    value networks, energy-based transformers). Rows stay independent:
    :math:`\partial y_K[b] / \partial y_0[b'] = 0` for :math:`b \ne b'` (the gradient of
    :math:`\sum_b F_b` with respect to row b involves row b only).

    Args:
        energy: the energy F (its ``forward`` is differentiated).
        y0: (B, *y_shape) starting points; they need not require grad.
        x: (B, *x_shape) inputs or ``None``.
        num_steps: K >= 0.
        step_size: :math:`\eta > 0`.
        solver: ``"gd"`` (the only unrolled solver).

    Returns:
        (B, *y_shape) :math:`y_K`, attached to the graph.

    References:
        Belanger, Yang & McCallum, "End-to-End Learning for Structured Prediction Energy
        Networks", ICML 2017.

    Example:
        >>> import torch, ebmlab as eb
        >>> w = torch.tensor(2.0, requires_grad=True)
        >>> f = eb.FunctionEnergy(lambda y, x: 0.5 * w * (y**2).sum(-1))
        >>> y = eb.inference.unroll(f, torch.ones(1, 1), num_steps=3, step_size=0.1)
        >>> round(y.item(), 6)  # (1 - 0.1 w)^3 = 0.8^3
        0.512
        >>> (g,) = torch.autograd.grad(y.sum(), w)  # -3 * 0.1 * 0.8^2
        >>> round(g.item(), 6)
        -0.192
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
    check_tensor(y0, "y0")
    if y0.shape[0] == 0:
        raise ValueError(f"y0 is empty (shape {tuple(y0.shape)}); expected B >= 1")
    check_batch(y0, x, y_name="y0")
    energy.check_y_shape(y0, "y0")
    energy.check_x_shape(x)
    check_positive_int(num_steps, "num_steps", minimum=0)
    eta = check_positive(step_size, "step_size")
    if solver not in UNROLL_SOLVERS:
        raise ValueError(f"solver must be one of {list(UNROLL_SOLVERS)}; got {solver!r}")
    y = y0
    with torch.enable_grad():
        if not y.requires_grad:
            y = y.clone().requires_grad_(True)
        for k in range(num_steps):
            e = energy.forward(y, x)
            if k == 0:
                check_energy_output(e, y.shape[0], f"{type(energy).__name__}.forward")
            (g,) = torch.autograd.grad(e.sum(), y, create_graph=True)
            y = y - eta * g
    return y
