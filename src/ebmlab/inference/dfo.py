"""Derivative-free inference: the sample / reweight / resample optimiser of implicit BC."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive, check_positive_int

__all__ = ["DFO"]


class DFO:
    r"""Population (cross-entropy style) minimisation with no gradient.

    The S starts of each input are its population. Each iteration evaluates F, weights the
    members by :math:`\mathrm{softmax}(-F / \tau)` within each input, resamples S members with
    replacement by those weights and adds Gaussian noise whose scale shrinks by ``shrink``
    every iteration (clipped to the domain). A last resampling without noise leaves the
    population on its best points; ``eb.infer`` returns the distinct modes of that final
    population (merged like any end points, without the gradient tests). It needs only
    ``forward``: non-differentiable and discontinuous energies are fine.

    Args:
        num_iters: iterations (``max_steps`` of ``eb.infer`` is not used).
        noise_scale: initial noise, as a fraction of the domain's width per coordinate (or of
            the starts' spread without a domain).
        shrink: factor applied to the noise after each iteration.
        temperature: :math:`\tau`, in units of the energy.
        generator: random source of the resampling and the noise.

    References:
        Florence et al., "Implicit Behavioral Cloning", CoRL 2021, arXiv:2109.00137
        (derivative-free optimiser, Algorithm 1).

    Example:
        >>> import torch, ebmlab as eb
        >>> step = eb.FunctionEnergy(lambda y, x: ((y - 0.3).abs() > 0.1).any(-1).float(),
        ...                          y_shape=(2,))
        >>> res = eb.infer(step, domain=eb.Box([-1.0, -1.0], [1.0, 1.0]), num_starts=256,
        ...                solver=eb.inference.DFO(generator=torch.Generator().manual_seed(0)),
        ...                generator=torch.Generator().manual_seed(0))
        >>> float(res.energy[0, 0]), bool(((res.best - 0.3).abs() <= 0.1).all())
        (0.0, True)
    """

    def __init__(
        self,
        num_iters: int = 10,
        noise_scale: float = 0.33,
        shrink: float = 0.5,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.num_iters = check_positive_int(num_iters, "num_iters")
        self.noise_scale = check_positive(noise_scale, "noise_scale")
        self.shrink = check_positive(shrink, "shrink")
        if self.shrink > 1:
            raise ValueError(f"shrink must be in (0, 1]; got {shrink}")
        self.temperature = check_positive(temperature, "temperature")
        self.generator = check_generator(generator)

    def __repr__(self) -> str:
        return (f"DFO(num_iters={self.num_iters}, noise_scale={self.noise_scale}, "
                f"shrink={self.shrink}, temperature={self.temperature})")

    def init(self, y: Tensor, energy: Tensor, grad: Tensor) -> dict:
        raise TypeError("DFO is a population solver with no per-start step: use it via eb.infer")

    def step(self, *args: object) -> tuple:
        raise TypeError("DFO is a population solver with no per-start step: use it via eb.infer")

    @torch.no_grad()
    def run(
        self,
        energy_fn: Callable[[Tensor], Tensor],
        y0: Tensor,
        b: int,
        width: Tensor | None,
        project: Callable[[Tensor], Tensor],
    ) -> tuple[Tensor, Tensor]:
        """Run on ``y0`` (B·S, *shape), B populations of S; return the final points, energies.

        ``energy_fn`` maps (B·S, *shape) to (B·S,), ``width`` is the domain's width per
        coordinate (``None``: the spread of the starts), ``project`` the domain's projection.
        """
        n = y0.shape[0]
        s = n // b
        y = project(y0)
        sigma = self.noise_scale * (width if width is not None else y.std(0).clamp_min(1e-12))
        base = (torch.arange(b, device=y.device) * s).repeat_interleave(s)
        for it in range(self.num_iters + 1):
            e = energy_fn(y)
            logits = -(e.reshape(b, s) / self.temperature)
            logits = torch.where(torch.isfinite(logits), logits, torch.full_like(logits, -1e30))
            w = torch.softmax(logits, dim=1)
            pick = torch.multinomial(w, s, replacement=True, generator=self.generator)
            y = y[base + pick.reshape(-1)]
            if it == self.num_iters:
                break
            noise = torch.randn(y.shape, generator=self.generator, dtype=y.dtype, device=y.device)
            y = project(y + sigma * noise)
            sigma = sigma * self.shrink
        return y, energy_fn(y)
