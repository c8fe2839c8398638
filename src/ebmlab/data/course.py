r"""The NYU course's latent-variable data: the horn and its x = 0 slice, the ellipse.

With :math:`a = 1.5`, :math:`b = 2` (the course's α, β, renamed so as not to clash with the
inverse temperature): :math:`x \sim U(0, 1)`, :math:`\theta \sim U(0, 2\pi)`,
:math:`\varepsilon \sim N(0, \sigma^2 I_2)`,
:math:`\rho(x) = [a x + b (1 - x),\; b x + a (1 - x)]\, e^{2x}` and
:math:`y = [\rho_1(x) \cos\theta, \rho_2(x) \sin\theta] + \varepsilon`.
The ellipse is x = 0: :math:`y = [2 \cos\theta, 1.5 \sin\theta] + \varepsilon`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive, check_positive_int

__all__ = ["ellipse", "horn", "horn_radii"]

A, B = 1.5, 2.0


def horn_radii(x: Tensor) -> Tensor:
    r"""Return :math:`\rho(x) = [a x + b(1-x),\; b x + a(1-x)]\, e^{2x}`: (N, 1) -> (N, 2).

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.data.horn_radii(torch.tensor([[0.0]])).tolist()
        [[2.0, 1.5]]
    """
    return torch.cat([A * x + B * (1 - x), B * x + A * (1 - x)], -1) * torch.exp(2 * x)


def _draw(
    x: Tensor, noise: float, generator: torch.Generator | None
) -> Tensor:
    num = x.shape[0]
    theta = 2 * math.pi * torch.rand(num, 1, generator=generator, dtype=x.dtype, device=x.device)
    eps = noise * torch.randn(num, 2, generator=generator, dtype=x.dtype, device=x.device)
    rho = horn_radii(x)
    return rho * torch.cat([theta.cos(), theta.sin()], -1) + eps


def ellipse(
    num: int = 24,
    *,
    noise: float = 1 / 20,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Draw the course's ellipse: :math:`y = [2 \cos\theta, 1.5 \sin\theta] + \varepsilon`.

    θ ~ U(0, 2π) is drawn first (all ``num`` values), then ε ~ N(0, noise² I₂).

    Args:
        num: number of points (24 in the course).
        noise: standard deviation σ of ε per coordinate (1/20 in the course).
        generator: random source. dtype, device: of the result.

    Returns:
        A ``(num, 2)`` tensor.

    Example:
        >>> import torch, ebmlab as eb
        >>> y = eb.data.ellipse(generator=torch.Generator().manual_seed(0))
        >>> y.shape
        torch.Size([24, 2])
    """
    check_positive_int(num, "num")
    check_positive(noise, "noise")
    check_generator(generator)
    x = torch.zeros(num, 1, dtype=dtype or torch.get_default_dtype(), device=device)
    return _draw(x, noise, generator)


def horn(
    num: int,
    *,
    noise: float = 1 / 20,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Draw the course's horn: x ~ U(0, 1), y = ρ(x) ⊙ [cos θ, sin θ] + ε.

    The draws are x (all ``num``), then θ, then ε, from the same generator.

    Args:
        num: number of points.
        noise: standard deviation σ of ε per coordinate (1/20 in the course).
        generator: random source. dtype, device: of the result.

    Returns:
        ``(x, y)`` of shapes ``(num, 1)`` and ``(num, 2)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> x, y = eb.data.horn(100, generator=torch.Generator().manual_seed(0))
        >>> x.shape, y.shape
        (torch.Size([100, 1]), torch.Size([100, 2]))
    """
    check_positive_int(num, "num")
    check_positive(noise, "noise")
    check_generator(generator)
    dt = dtype or torch.get_default_dtype()
    x = torch.rand(num, 1, generator=generator, dtype=dt, device=device)
    return x, _draw(x, noise, generator)
