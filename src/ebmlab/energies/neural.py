"""Neural energies: ``MLPEnergy`` for conditional and unconditional F(x, y)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch.nn.modules import module as _module

from ebmlab._checks import check_positive_int
from ebmlab.energy import Energy

__all__ = ["MLPEnergy"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
}


def _silu_backward(grad: Tensor, pre: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.silu_backward(grad, pre)


def _tanh_backward(grad: Tensor, pre: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.tanh_backward(grad, out)


# Activations whose gradient energy_and_grad writes out, with the backward op autograd uses
# (so the result is the same, bit for bit); the others go through autograd.
_BACKWARD = {nn.SiLU: (functional.silu, _silu_backward), nn.Tanh: (torch.tanh, _tanh_backward)}


class MLPEnergy(Energy):
    r"""A multilayer perceptron :math:`F(x, y) = \mathrm{MLP}([y, x])`, one scalar per row.

    Activations are smooth (SiLU) by default so that gradient inference and Langevin sampling
    see a differentiable landscape, as the lecture asks.

    Args:
        y_dim: dimension of ``y`` (shape (B, y_dim)).
        x_dim: dimension of ``x``; 0 for an unconditional energy F(y).
        hidden: widths of the hidden layers.
        activation: one of ``silu``, ``softplus``, ``tanh``, ``gelu``, ``elu``, ``relu``.

    Example:
        >>> import torch, ebmlab as eb
        >>> f = eb.energies.MLPEnergy(2, x_dim=1, hidden=(16,))
        >>> f(torch.zeros(5, 2), x=torch.zeros(5, 1)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        y_dim: int,
        x_dim: int = 0,
        hidden: Sequence[int] = (128, 128),
        activation: str = "silu",
    ) -> None:
        super().__init__()
        check_positive_int(y_dim, "y_dim")
        check_positive_int(x_dim, "x_dim", minimum=0)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}"
            )
        widths = [y_dim + x_dim, *(check_positive_int(h, "hidden") for h in hidden), 1]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)
        self.y_dim, self.x_dim = y_dim, x_dim
        self.y_shape = (y_dim,)

    def _inputs(self, y: Tensor, x: Tensor | None) -> Tensor:
        """The network's input ``[y, x]`` (or ``y``), refusing an ``x`` that does not fit."""
        if self.x_dim:
            if x is None:
                raise ValueError(f"MLPEnergy is conditional (x_dim={self.x_dim}); got x=None")
            h = torch.cat([y, x.reshape(x.shape[0], -1)], -1)
        else:
            if x is not None:
                raise ValueError("MLPEnergy is unconditional (x_dim=0); got x, expected None")
            h = y
        return h

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        return self.net(self._inputs(y, x)).squeeze(-1)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Return :math:`F(x, y)` and :math:`\nabla_y F`, detached.

        For the built-in layers (Linear with SiLU or tanh) the backward pass is written out
        with the ops autograd would run (one matrix product and one activation backward per
        layer), so no autograd graph is built and the result equals the autograd gradient
        bit for bit, in fewer operations. Anything else (another activation, hooks, a
        subclass's ``forward``, autocast) uses autograd.

        Example:
            >>> import torch, ebmlab as eb
            >>> f = eb.energies.MLPEnergy(2, hidden=(8,))
            >>> y = torch.randn(4, 2)
            >>> e, g = f.energy_and_grad(y)
            >>> e2, g2 = eb.Energy.energy_and_grad(f, y)
            >>> torch.equal(e, e2), torch.equal(g, g2)
            (True, True)
        """
        plan = self._plan()
        if plan is None:
            return super().energy_and_grad(y, x)
        if torch.compiler.is_compiling() and len(plan) > 1:  # a hidden layer to split
            return self._traced_energy_and_grad(plan, y, x)
        h = self._inputs(y, x)
        with torch.no_grad():
            saved = []
            for linear, act in plan:
                z = functional.linear(h, linear.weight, linear.bias)
                if act is None:
                    h = z
                else:
                    h = act[0](z)
                    saved.append((z, h, act[1]))
            # The last layer has one output: dF/dh is its weight row for every input. The
            # activation backward reads the broadcast row as it is (no (B, width) copy) when
            # the width is a multiple of 64: then its vectorised loop has no scalar tail on
            # either layout and the bits are those of the contiguous copy.
            w = plan[-1][0].weight
            g = w.expand(h.shape[0], w.shape[1])
            if len(plan) == 1 or w.shape[1] % 64:
                g = g.contiguous()
            for i in range(len(plan) - 2, -1, -1):
                pre, out, backward = saved[i]
                g = backward(g, pre, out).mm(plan[i][0].weight)
            energy = h.squeeze(-1)
        return energy, (g[:, : self.y_dim] if self.x_dim else g)

    def _traced_energy_and_grad(
        self, plan: list[tuple[nn.Linear, tuple | None]], y: Tensor, x: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`energy_and_grad` as ``torch.compile`` traces it: the same math, other rounding.

        - The first layer is split into its ``y`` and ``x`` columns: ``x``'s part (with the
          bias) is the same at every step of a compiled block (``eb.infer``), so the
          compiler computes it once per block (common subexpressions are merged), and the
          input gradient is the product with the ``y`` columns only (no concatenation, no
          slice: a contiguous gradient, which the solver's element-wise update vectorises).
        - A bias is subtracted negated (``mm(h, W.T) - (-b)``, equal to ``+ b`` exactly):
          on the CPU the compiler turns ``mm + b`` into ``addmm``, which first copies the
          bias into the output (14 % of a compiled step); a subtraction is left alone and
          fuses into the activation's kernel.
        """
        if self.x_dim and x is None:
            raise ValueError(f"MLPEnergy is conditional (x_dim={self.x_dim}); got x=None")
        if not self.x_dim and x is not None:
            raise ValueError("MLPEnergy is unconditional (x_dim=0); got x, expected None")
        with torch.no_grad():
            first = plan[0][0]
            weight_y = first.weight[:, : self.y_dim]
            if x is not None:
                neg_bias = -functional.linear(
                    x.reshape(x.shape[0], -1), first.weight[:, self.y_dim :], first.bias)
            else:
                neg_bias = -first.bias
            h, saved = y, []
            for i, (linear, act) in enumerate(plan[:-1]):
                z = torch.mm(h, (weight_y if i == 0 else linear.weight).t()) - (
                    neg_bias if i == 0 else -linear.bias)
                h = act[0](z)
                saved.append((z, h, act[1]))
            last = plan[-1][0]
            energy = functional.linear(h, last.weight, last.bias).squeeze(-1)
            g = last.weight.expand(h.shape[0], last.weight.shape[1])
            for i in range(len(saved) - 1, -1, -1):
                pre, out, backward = saved[i]
                g = backward(g, pre, out).mm(weight_y if i == 0 else plan[i][0].weight)
        return energy, g

    def _plan(self) -> list[tuple[nn.Linear, tuple | None]] | None:
        """(linear, (activation, its backward) or None) per layer, or None: use autograd."""
        if (
            type(self).forward is not MLPEnergy.forward
            or torch.is_autocast_enabled()
            or _module._global_forward_hooks
            or _module._global_forward_pre_hooks
        ):
            return None
        plan: list[tuple[nn.Linear, tuple | None]] = []
        for layer in self.net:
            if layer._forward_hooks or layer._forward_pre_hooks:
                return None
            if type(layer) is nn.Linear:
                plan.append((layer, None))
            elif plan and plan[-1][1] is None and type(layer) in _BACKWARD:
                plan[-1] = (plan[-1][0], _BACKWARD[type(layer)])
            else:
                return None
        if not plan or plan[-1][1] is not None or plan[-1][0].out_features != 1:
            return None
        if self.net._forward_hooks or self.net._forward_pre_hooks:
            return None
        return plan
