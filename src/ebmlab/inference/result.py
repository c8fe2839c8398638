"""``Inference``: the record returned by ``eb.infer`` and ``eb.argmin_discrete``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["Inference"]


@dataclass(frozen=True)
class Inference:
    """Distinct minima of :math:`F(x_b, \\cdot)` for each of the B inputs, best first.

    Attributes:
        y: (B, K, *y_shape) distinct minima sorted by energy, ascending; padded slots repeat
            the best minimum so that they stay finite and plottable.
        energy: (B, K) their energies, ``+inf`` in padded slots.
        valid: (B, K) which slots hold a minimum.
        count: (B,) the number of distinct minima per input.
        converged: (B, K) whether the start that reached each minimum met the tolerance.
        num_steps: the number of solver steps taken (the largest over starts).
        num_unconverged: (B,) starts that hit ``max_steps`` before converging. Their end
            points are not minima; they are merged (flagged ``converged=False``) only for
            inputs where no start converged.
        num_diverged: (B,) starts whose energy or gradient became non-finite (dropped).
        trajectory: (T, B, S, *y_shape) every start's path, when requested.
        z: (B, K, *z_shape) the latent part of joint (y, z) minima, for a ``LatentEnergy``.
    """

    y: Tensor
    energy: Tensor
    valid: Tensor
    count: Tensor
    converged: Tensor
    num_steps: int
    num_unconverged: Tensor
    num_diverged: Tensor
    trajectory: Tensor | None = None
    z: Tensor | None = None

    @property
    def best(self) -> Tensor:
        """(B, *y_shape): the lowest-energy minimum of each input, ``y[:, 0]``."""
        return self.y[:, 0]

    def minima(self, b: int = 0) -> Tensor:
        """Return the valid minima of input ``b`` as a (count_b, *y_shape) tensor."""
        return self.y[b, self.valid[b]]
