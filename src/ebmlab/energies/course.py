r"""The NYU course's latent-variable energies: the ellipse and the horn.

References:
    LeCun & Canziani, NYU Deep Learning (2021), "Energy-based models II/III: latent-variable
    EBMs, free energy, and the horn"; LeCun et al., "A Tutorial on Energy-Based Learning", 2006.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlab._checks import check_positive_int
from ebmlab.energy import LatentEnergy

__all__ = ["Ellipse", "Horn"]


def _circle(z: Tensor) -> Tensor:
    """g(z) = [cos z, sin z]: (N, 1) -> (N, 2)."""
    return torch.cat([z.cos(), z.sin()], -1)


class Ellipse(LatentEnergy):
    r"""The course's ellipse :math:`E(y, z) = \lVert y - [w_1 \cos z, w_2 \sin z] \rVert^2`.

    As z sweeps a period the decoder traces the ellipse with semi-axes :math:`w`; the free
    energy :math:`F_\infty(y) = \min_z E(y, z)` is the squared distance from y to it (on a z
    grid, to the grid's polygon of points). ``w`` is a learnable parameter.

    Args:
        w: the two semi-axes :math:`(w_1, w_2)`; the course's data have (2, 1.5).

    Example:
        >>> import torch, ebmlab as eb
        >>> ellipse = eb.energies.Ellipse()
        >>> ellipse(torch.tensor([[2.0, 1.0]]), torch.zeros(1, 1)).tolist()
        [1.0]
        >>> ellipse.decode(torch.tensor([[0.0]])).tolist()
        [[2.0, 0.0]]
    """

    y_shape = (2,)
    z_shape = (1,)

    def __init__(self, w: Sequence[float] | Tensor = (2.0, 1.5)) -> None:
        super().__init__()
        w_t = torch.as_tensor(w, dtype=torch.get_default_dtype()).detach().clone()
        if w_t.shape != (2,):
            raise ValueError(f"w must have shape (2,); got {tuple(w_t.shape)}")
        if not torch.isfinite(w_t).all():
            raise ValueError(f"w must be finite; got {w_t.tolist()}")
        self.w = nn.Parameter(w_t)

    def _no_x(self, x: Tensor | None) -> None:
        if x is not None:
            raise ValueError("Ellipse is unconditional; got x, expected x=None")

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        r"""Return the point :math:`[w_1 \cos z, w_2 \sin z]` of each z: (B, 1) -> (B, 2)."""
        self._no_x(x)
        return self.w * _circle(z)

    def forward(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        return ((y - self.decode(z, x)) ** 2).sum(-1)

    def pairwise(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Return the energy of every y (B, 2) against every z (C, 1): (B, C)."""
        d = self.decode(z, x)  # (C, 2)
        return ((y.unsqueeze(1) - d.unsqueeze(0)) ** 2).sum(-1)

    def energy_and_grad(
        self, y: Tensor, z: Tensor, x: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            g = _circle(z)
            r = y - self.w * g  # (B, 2)
            dz = torch.cat([-g[:, 1:], g[:, :1]], -1) * self.w  # d decode / dz
            return (r**2).sum(-1), 2 * r, -2 * (r * dz).sum(-1, keepdim=True)


class Horn(LatentEnergy):
    r"""The course's horn :math:`E(x, y, z) = \sum_i (y_i - f_i(x)\, g_i(z))^2`.

    ``f`` is a 1 → 8 → 8 → 2 ReLU network of the scalar input x and
    :math:`g(z) = [\cos z, \sin z]`, so for each x the decoder traces an ellipse with
    semi-axes :math:`f(x)`, and over x a horn. Trained on :func:`ebmlab.data.horn`,
    :math:`f(x)` should approach :math:`\rho(x)`.

    Args:
        hidden: widths of the two hidden layers (the course's 8 and 8).

    Example:
        >>> import torch, ebmlab as eb
        >>> torch.manual_seed(0) and None
        >>> horn = eb.energies.Horn()
        >>> horn(torch.zeros(3, 2), torch.zeros(3, 1), x=torch.rand(3, 1)).shape
        torch.Size([3])
    """

    y_shape = (2,)
    z_shape = (1,)
    x_shape = (1,)

    def __init__(self, hidden: Sequence[int] = (8, 8)) -> None:
        super().__init__()
        widths = [1, *(check_positive_int(h, "hidden") for h in hidden), 2]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.f = nn.Sequential(*layers)

    def _need_x(self, x: Tensor | None) -> Tensor:
        if x is None:
            raise ValueError("Horn is conditional; x is required, shape (B, 1), got None")
        if x.shape[1:] != (1,):
            raise ValueError(f"x must have shape (B, 1); got {tuple(x.shape)}")
        return x

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Return :math:`f(x) \\odot g(z)`: z (B, 1), x (B, 1) -> (B, 2)."""
        return self.f(self._need_x(x)) * _circle(z)

    def forward(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        return ((y - self.decode(z, x)) ** 2).sum(-1)

    def pairwise(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Return the energy of every (x, y) row (B) against every z (C, 1): (B, C)."""
        f = self.f(self._need_x(x))  # (B, 2)
        d = f.unsqueeze(1) * _circle(z).unsqueeze(0)  # (B, C, 2)
        return ((y.unsqueeze(1) - d) ** 2).sum(-1)
