"""``Inference``: the record returned by ``eb.infer`` and ``eb.argmin_discrete``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import Tensor

from ebmlab.warnings import InferenceWarning

__all__ = ["Inference", "warn_unconverged"]


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
        hits: (B, K) how many starts ended in each minimum (0 in padded slots); they sum to
            the kept starts of each input.
        estimated_count: (B,) Chao1 estimate of the total number of minima from ``hits``
            (:func:`ebmlab.inference.coverage.estimated_count`).
        unseen_probability: (B,) Good–Turing estimate of the probability that one more start
            finds a new minimum (:func:`ebmlab.inference.coverage.unseen_probability`).
        first_hit: (B, K) the index (in the order the starts were drawn) of the first start
            that reached each minimum: ``(first_hit < n).sum(1)`` minima were found by the first
            n starts (``eb.plot.coverage``).
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
    hits: Tensor | None = None
    estimated_count: Tensor | None = None
    unseen_probability: Tensor | None = None
    first_hit: Tensor | None = None

    @property
    def best(self) -> Tensor:
        """(B, *y_shape): the lowest-energy minimum of each input, ``y[:, 0]``."""
        return self.y[:, 0]

    def minima(self, b: int = 0) -> Tensor:
        """Return the valid minima of input ``b`` as a (count_b, *y_shape) tensor."""
        return self.y[b, self.valid[b]]


def warn_unconverged(res: Inference, max_steps: int) -> None:
    """Warn (:class:`ebmlab.InferenceWarning`) if some reported minima did not converge."""
    shown = res.valid & ~res.converged
    if not bool(shown.any()):
        return
    rows = int(shown.any(1).sum())
    warnings.warn(
        f"{rows} of {res.valid.shape[0]} inputs report minima from unconverged end points "
        f"({int(res.num_unconverged.sum())} starts in all stopped at max_steps={max_steps} "
        "before converging, flagged converged=False); raise max_steps, use a domain, or "
        "check the energy",
        InferenceWarning,
        stacklevel=3,
    )
