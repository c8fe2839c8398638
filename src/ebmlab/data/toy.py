"""Toy densities for learning and sampling: 2-D mixtures, rings, checkerboard, moons, 1-D modes."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive, check_positive_int

__all__ = [
    "eight_gaussians",
    "rings",
    "checkerboard",
    "two_moons",
    "multimodal_1d",
    "two_branch",
]


def _dtype(dtype: torch.dtype | None) -> torch.dtype:
    return dtype or torch.get_default_dtype()


def _randn(num: int, *shape: int, generator: torch.Generator | None, dtype: torch.dtype,
           device: torch.device | str | None) -> Tensor:
    return torch.randn((num, *shape), generator=generator, dtype=dtype, device=device)


def _rand(num: int, *shape: int, generator: torch.Generator | None, dtype: torch.dtype,
          device: torch.device | str | None) -> Tensor:
    return torch.rand((num, *shape), generator=generator, dtype=dtype, device=device)


def eight_gaussians(
    num: int,
    *,
    radius: float = 2.0,
    scale: float = 0.2,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Draw from 8 equal-weight isotropic Gaussians evenly spaced on a circle.

    Component k has mean :math:`r(\cos 2\pi k/8, \sin 2\pi k/8)` and standard deviation
    ``scale``: the law of ``eb.energies.GaussianMixture.ring(8, radius, scale)``, whose energy
    is the exact negative log density (use it for the data entropy).

    Args:
        num: number of points.
        radius: radius of the circle of means.
        scale: standard deviation of each component.
        generator: random source. dtype, device: of the result.

    Returns:
        A ``(num, 2)`` tensor.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.data.eight_gaussians(5, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 2])
    """
    check_positive_int(num, "num")
    check_positive(radius, "radius")
    check_positive(scale, "scale")
    check_generator(generator)
    dt = _dtype(dtype)
    k = torch.randint(8, (num,), generator=generator, device=device)
    angle = k.to(dt) * (2 * math.pi / 8)
    means = radius * torch.stack([angle.cos(), angle.sin()], -1)
    return means + scale * _randn(num, 2, generator=generator, dtype=dt, device=device)


def rings(
    num: int,
    *,
    radii: tuple[float, ...] = (1.0, 2.0, 3.0),
    scale: float = 0.1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Draw from concentric noisy rings, equal weight per ring.

    :math:`y = (r_k + \sigma\varepsilon)(\cos\theta, \sin\theta)` with ring k uniform,
    :math:`\theta \sim U(0, 2\pi)`, :math:`\varepsilon \sim N(0, 1)`; so the density is
    :math:`p(y) = \frac{1}{K}\sum_k N(\lVert y\rVert; r_k, \sigma^2) / (2\pi\lVert y\rVert)`
    (up to the negligible mass at negative radius).

    Args:
        num: number of points.
        radii: ring radii (all > 0).
        scale: radial standard deviation :math:`\sigma`.
        generator: random source. dtype, device: of the result.

    Returns:
        A ``(num, 2)`` tensor.

    Example:
        >>> import torch, ebmlab as eb
        >>> y = eb.data.rings(1000, generator=torch.Generator().manual_seed(0))
        >>> bool(y.norm(dim=-1).max() < 3.6)
        True
    """
    check_positive_int(num, "num")
    check_positive(scale, "scale")
    check_generator(generator)
    if len(radii) == 0:
        raise ValueError("radii must hold at least one radius; got ()")
    for r in radii:
        check_positive(r, "radii")
    dt = _dtype(dtype)
    r = torch.tensor(radii, dtype=dt, device=device)
    k = torch.randint(len(radii), (num,), generator=generator, device=device)
    theta = 2 * math.pi * _rand(num, generator=generator, dtype=dt, device=device)
    rho = r[k] + scale * _randn(num, generator=generator, dtype=dt, device=device)
    return rho.unsqueeze(-1) * torch.stack([theta.cos(), theta.sin()], -1)


def checkerboard(
    num: int,
    *,
    size: float = 4.0,
    cells: int = 4,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Draw uniformly from the black squares of a checkerboard on :math:`[-s/2, s/2]^2`.

    With ``cells`` × ``cells`` squares, the black ones are those whose row + column index is
    even; the density is uniform on half the square, so its entropy is
    :math:`\log(s^2 / 2)` nats.

    Args:
        num: number of points.
        size: side length s of the board.
        cells: squares per side (even or odd).
        generator: random source. dtype, device: of the result.

    Returns:
        A ``(num, 2)`` tensor.

    Example:
        >>> import torch, ebmlab as eb
        >>> y = eb.data.checkerboard(100, generator=torch.Generator().manual_seed(0))
        >>> bool(y.abs().max() <= 2.0)
        True
    """
    check_positive_int(num, "num")
    check_positive(size, "size")
    check_positive_int(cells, "cells")
    check_generator(generator)
    dt = _dtype(dtype)
    # Enumerate the black squares and pick one uniformly, then a uniform point inside it.
    ij = torch.cartesian_prod(torch.arange(cells), torch.arange(cells))
    black = ij[(ij.sum(-1) % 2) == 0].to(device=device)
    pick = torch.randint(black.shape[0], (num,), generator=generator, device=device)
    u = _rand(num, 2, generator=generator, dtype=dt, device=device)
    h = size / cells
    return (black[pick].to(dt) + u) * h - size / 2


def two_moons(
    num: int,
    *,
    scale: float = 0.1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Draw from two interleaved half circles with Gaussian noise, centred at the origin.

    Upper moon :math:`(\cos t, \sin t)`, lower moon :math:`(1 - \cos t, 0.5 - \sin t)`,
    :math:`t \sim U(0, \pi)`, both shifted by (−0.5, −0.25), plus :math:`N(0, \sigma^2 I)`.

    Args:
        num: number of points.
        scale: noise standard deviation :math:`\sigma`.
        generator: random source. dtype, device: of the result.

    Returns:
        A ``(num, 2)`` tensor.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.data.two_moons(4, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 2])
    """
    check_positive_int(num, "num")
    check_positive(scale, "scale", allow_inf=False)
    check_generator(generator)
    dt = _dtype(dtype)
    is_upper = torch.randint(2, (num,), generator=generator, device=device).bool()
    t = math.pi * _rand(num, generator=generator, dtype=dt, device=device)
    upper = torch.stack([t.cos(), t.sin()], -1)
    lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], -1)
    y = torch.where(is_upper.unsqueeze(-1), upper, lower)
    shift = torch.tensor([-0.5, -0.25], dtype=dt, device=device)
    return y + shift + scale * _randn(num, 2, generator=generator, dtype=dt, device=device)


def multimodal_1d(
    num: int,
    *,
    means: tuple[float, ...] = (-2.0, 0.0, 2.5),
    scales: tuple[float, ...] = (0.3, 0.5, 0.3),
    weights: tuple[float, ...] = (0.3, 0.4, 0.3),
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Draw from a 1-D Gaussian mixture :math:`\sum_k w_k N(\mu_k, \sigma_k^2)`.

    The law is ``eb.energies.GaussianMixture([[m] for m in means], scales, weights)``.

    Args:
        num: number of points.
        means, scales, weights: the components (equal lengths; weights are normalised).
        generator: random source. dtype, device: of the result.

    Returns:
        A ``(num, 1)`` tensor.

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.data.multimodal_1d(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1])
    """
    check_positive_int(num, "num")
    check_generator(generator)
    if not (len(means) == len(scales) == len(weights)) or len(means) == 0:
        raise ValueError(
            "means, scales and weights must have the same non-zero length; got "
            f"{len(means)}, {len(scales)}, {len(weights)}"
        )
    for s in scales:
        check_positive(s, "scales")
    for w in weights:
        check_positive(w, "weights")
    dt = _dtype(dtype)
    w = torch.tensor(weights, dtype=dt, device=device)
    k = torch.multinomial(w / w.sum(), num, replacement=True, generator=generator)
    mu = torch.tensor(means, dtype=dt, device=device)[k]
    sd = torch.tensor(scales, dtype=dt, device=device)[k]
    return (mu + sd * _randn(num, generator=generator, dtype=dt, device=device)).unsqueeze(-1)


def two_branch(
    num: int,
    *,
    x_max: float = 4.0,
    scale: float = 0.05,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Draw a conditional set with two answers per input: :math:`y = \pm\sqrt{x} + \varepsilon`.

    :math:`x \sim U(0, x_{max})`, the sign is a fair coin and
    :math:`\varepsilon \sim N(0, \sigma^2)`: the implicit function :math:`y^2 = x` that a
    feed-forward regressor averages to 0 and an energy model keeps as two branches.

    Args:
        num: number of pairs.
        x_max: upper end of the input range.
        scale: noise standard deviation :math:`\sigma`.
        generator: random source. dtype, device: of the result.

    Returns:
        ``(x, y)``, each ``(num, 1)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> x, y = eb.data.two_branch(200, scale=1e-9, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.allclose(y**2, x, atol=1e-6))
        True
    """
    check_positive_int(num, "num")
    check_positive(x_max, "x_max")
    check_positive(scale, "scale")
    check_generator(generator)
    dt = _dtype(dtype)
    x = x_max * _rand(num, 1, generator=generator, dtype=dt, device=device)
    sign = torch.randint(2, (num, 1), generator=generator, device=device).to(dt) * 2 - 1
    y = sign * x.sqrt() + scale * _randn(num, 1, generator=generator, dtype=dt, device=device)
    return x, y
