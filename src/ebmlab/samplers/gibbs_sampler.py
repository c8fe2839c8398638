"""Single-site Gibbs sampling of any energy over binary or categorical y."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ebmlab._checks import check_batch, check_beta, check_positive_int, check_tensor
from ebmlab.energy import Energy, LatentEnergy
from ebmlab.samplers.state import Info

__all__ = ["Gibbs", "GibbsState", "as_marginal"]

SCANS = ("systematic", "random")


class GibbsState(NamedTuple):
    """Chains over a discrete y: ``position`` ``(chains, *y_shape)`` and its ``energy``."""

    position: Tensor
    energy: Tensor


def as_marginal(energy: Any, beta: float) -> Energy:
    """Return ``energy``, or the free energy ``energy.marginal(beta)`` of a latent model (RBM)."""
    if isinstance(energy, LatentEnergy) and callable(getattr(energy, "marginal", None)):
        return energy.marginal(beta)
    return energy


class Gibbs:
    r"""Single-site Gibbs sampling of :math:`p(y) \propto e^{-\beta F(x, y)}` over discrete y.

    Each site update evaluates the energy at all ``num_classes`` values of that site (one
    batched call of ``chains × num_classes`` rows) and draws the new value from the exact
    conditional :math:`\mathrm{softmax}(-\beta F)`. ``scan="systematic"`` makes one step a
    sweep over every site in order (d batched calls); ``"random"`` updates one uniformly
    drawn site per chain and step (one call). Both leave p invariant; every update is
    accepted. y is a floating tensor of whole numbers (``eb.Binary``/``eb.Categorical``
    domains); an RBM passed directly is sampled through its free energy.

    Args:
        num_classes: the number of values n of each site (2 for binary y).
        beta: inverse temperature.
        scan: ``"systematic"`` or ``"random"``.

    Raises:
        ValueError: bad ``num_classes``, ``beta`` or ``scan``.

    References:
        Geman and Geman, "Stochastic relaxation, Gibbs distributions, and the Bayesian
        restoration of images", IEEE PAMI, 1984.

    Example:
        >>> import torch, ebmlab as eb
        >>> ising = eb.FunctionEnergy(lambda y, x: -(y[:, 1:] * y[:, :-1]).sum(-1), y_shape=(5,))
        >>> chain = eb.sample(ising, torch.zeros(3, 5), eb.samplers.Gibbs(), 20,
        ...                   generator=torch.Generator().manual_seed(0))
        >>> chain.samples.shape
        torch.Size([20, 3, 5])
    """

    def __init__(
        self, num_classes: int = 2, *, beta: float = 1.0, scan: str = "systematic"
    ) -> None:
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
        self.beta = check_beta(beta)
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {SCANS}; got {scan!r}")
        self.scan = scan

    def __repr__(self) -> str:
        return f"Gibbs(num_classes={self.num_classes}, beta={self.beta}, scan={self.scan!r})"

    @torch.no_grad()
    def init(self, y0: Tensor, energy: Any, x: Tensor | None = None) -> GibbsState:
        """Return the state at ``y0`` ``(chains, *y_shape)`` with its energy cached.

        Raises:
            TypeError: if ``energy`` is not an ``eb.Energy`` or ``y0`` not a floating tensor.
            ValueError: if ``y0`` holds values outside ``0 .. num_classes - 1`` or does not
                fit the energy.
        """
        energy = as_marginal(energy, self.beta)
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an eb.Energy; got {type(energy).__name__}")
        check_tensor(y0, "y0", min_ndim=2)
        energy.check_y_shape(y0, "y0")
        check_batch(y0, x, y_name="y0")
        bad = (y0 != y0.round()) | (y0 < 0) | (y0 > self.num_classes - 1)
        if bool(bad.any()):
            raise ValueError(
                f"y0 must hold values in 0..{self.num_classes - 1}; got values such as "
                f"{y0[bad][:3].tolist()}"
            )
        y0 = y0.detach()
        return GibbsState(y0, energy.forward(y0, x))

    @torch.no_grad()
    def step(
        self,
        state: GibbsState,
        energy: Any,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[GibbsState, Info]:
        """Update every site (systematic) or one random site per chain (random)."""
        energy = as_marginal(energy, self.beta)
        y, e = state
        flat = y.flatten(1).clone()  # (chains, d)
        n, d, k = flat.shape[0], flat.shape[1], self.num_classes
        xr = None if x is None else x.repeat_interleave(k, dim=0)  # (N, ..) -> (N*k, ..)
        values = torch.arange(k, dtype=y.dtype, device=y.device)
        rows = torch.arange(n, device=y.device)
        is_divergent = torch.zeros(n, dtype=torch.bool, device=y.device)
        if self.scan == "systematic":
            order = [torch.full((n,), s, device=y.device) for s in range(d)]
        else:
            order = [torch.randint(d, (n,), generator=generator, device=y.device)]
        for site in order:
            cand = flat.unsqueeze(1).repeat(1, k, 1)  # (N, k, d)
            cand[rows, :, site] = values
            ek = energy.forward(cand.reshape(n * k, *y.shape[1:]), xr).reshape(n, k)
            logits = -self.beta * ek
            logits = torch.where(torch.isnan(logits), torch.full_like(logits, -math.inf), logits)
            dead = torch.isneginf(logits).all(1) | torch.isposinf(logits).any(1)
            is_divergent |= dead
            probs = torch.softmax(torch.where(dead.unsqueeze(1), torch.zeros_like(logits),
                                              logits), 1)
            u = torch.rand(n, 1, generator=generator, dtype=probs.dtype, device=y.device)
            choice = (probs.cumsum(1) < u).sum(1).clamp_(max=k - 1)
            # A row whose conditional is undefined keeps its current value.
            choice = torch.where(dead, flat[rows, site].long(), choice)
            flat[rows, site] = values[choice]
            e = torch.where(dead, e, ek[rows, choice])
        accepted = torch.ones(n, dtype=torch.bool, device=y.device)
        return GibbsState(flat.reshape(y.shape), e), Info(torch.ones_like(e), accepted,
                                                          is_divergent)
