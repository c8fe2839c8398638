"""Neural energies: ``MLPEnergy`` for conditional and unconditional F(x, y)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

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

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        if self.x_dim:
            if x is None:
                raise ValueError(f"MLPEnergy is conditional (x_dim={self.x_dim}); got x=None")
            h = torch.cat([y, x.reshape(x.shape[0], -1)], -1)
        else:
            if x is not None:
                raise ValueError("MLPEnergy is unconditional (x_dim=0); got x, expected None")
            h = y
        return self.net(h).squeeze(-1)
