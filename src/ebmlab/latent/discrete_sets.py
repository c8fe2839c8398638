r"""Discrete latent sets: ``Binary(k)`` and ``Categorical(k, num_classes)``, enumerated exactly."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_positive_int
from ebmlab.discrete_domain import codes
from ebmlab.latent.sets import LatentSet

__all__ = ["Binary", "Categorical", "MAX_LATENT_POINTS"]

# The set is materialised once as a (N, k) tensor (then streamed through the energy in chunks by
# FreeEnergy): 2^20 points of 20 sites are 168 MB in float64, the most worth holding.
MAX_LATENT_POINTS = 1 << 20


class Categorical(LatentSet):
    r"""Every vector of :math:`\{0, \dots, n-1\}^k`: k categorical latents, enumerated exactly.

    With ``reduction="integral"`` the weights are the counting measure (log weight 0), so
    :class:`ebmlab.FreeEnergy` is the exact marginalisation
    :math:`-\frac1\beta\log\sum_z e^{-\beta E(x, y, z)}`; with ``"mean"`` it is the average
    over the :math:`n^k` values. Points are whole numbers in the default floating dtype
    (site 0 varies fastest), built once and cached per dtype and device.

    Args:
        num_sites: the number of latents k.
        num_classes: the values n of each (at least 2).

    Raises:
        ValueError: if :math:`n^k` exceeds :data:`MAX_LATENT_POINTS` (:math:`2^{20}`); larger
            latent spaces need a structured energy (an RBM's closed-form free energy) or a
            sampler.

    Example:
        >>> import ebmlab as eb
        >>> z = eb.latent.Categorical(2, 3)
        >>> z.size, z.z_shape, z.points()[:4].tolist()
        (9, (2,), [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    """

    def __init__(self, num_sites: int, num_classes: int) -> None:
        super().__init__()
        self.num_sites = check_positive_int(num_sites, "num_sites")
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
        if self.num_classes**self.num_sites > MAX_LATENT_POINTS:
            raise ValueError(
                f"{self._name()} has {self.num_classes}^{self.num_sites} points, more than "
                f"the limit {MAX_LATENT_POINTS} (2^{int(math.log2(MAX_LATENT_POINTS))}) of an "
                "enumerated latent set; marginalise in closed form (e.g. RBM.free_energy) or "
                "sample instead"
            )
        self.z_shape = (self.num_sites,)

    def _name(self) -> str:
        return f"Categorical({self.num_sites}, num_classes={self.num_classes})"

    def __repr__(self) -> str:
        return self._name()

    @property
    def size(self) -> int:
        return self.num_classes**self.num_sites

    def _points(self) -> Tensor:
        return codes(0, self.size, self.num_sites, self.num_classes, dtype=torch.float64)

    def _integral_log_weights(self) -> Tensor:
        return torch.zeros(self.size, dtype=torch.float64)


class Binary(Categorical):
    r"""Every binary vector of :math:`\{0, 1\}^k` (:math:`2^k` points, k ≤ 20).

    Example:
        >>> import torch, ebmlab as eb
        >>> rbm = eb.energies.RBM(5, 3)
        >>> free = eb.FreeEnergy(rbm, eb.latent.Binary(3), beta=1.0, reduction="integral")
        >>> v = torch.ones(2, 5)
        >>> torch.allclose(free(v), rbm.free_energy(v))
        True
    """

    def __init__(self, num_sites: int) -> None:
        super().__init__(num_sites, 2)

    def _name(self) -> str:
        return f"Binary({self.num_sites})"
