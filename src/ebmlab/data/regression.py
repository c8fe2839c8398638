r"""1-D regression sets with several correct outputs: Gustafsson et al.'s ds1/ds2, a step, a circle.

Each generator returns ``(x, y)``, each ``(num, 1)``. The two sets of Gustafsson et al. (2020)
come with their exact conditional log density (``*_log_prob``), so a model's test NLL can be
set against the optimum :math:`\mathbb{E}_x H(y|x)` (``GUSTAFSSON_OPTIMAL_NLL``) and its
KL divergence computed on a grid. The branches :math:`y = \pm\sqrt{x}` are
:func:`ebmlab.data.two_branch`.

References:
    Gustafsson, Danelljan, Bhat, Schön, "How to Train Your Energy-Based Model for Regression",
    BMVC 2020, arXiv:2005.01698 (data sets ds1 and ds2, section 4.1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive, check_positive_int, check_tensor

__all__ = [
    "gustafsson_ds1",
    "gustafsson_ds2",
    "gustafsson_ds1_log_prob",
    "gustafsson_ds2_log_prob",
    "GUSTAFSSON_OPTIMAL_NLL",
    "step_function",
    "circle",
]

# E_x H(y|x) in nats, as printed by Gustafsson et al. (2020); tests recompute both numerically.
GUSTAFSSON_OPTIMAL_NLL: dict[str, float] = {"ds1": -0.326, "ds2": -1.486}

_DS1_SCALE = 0.075  # the two Gaussian branches for x < 0
_DS1_WEIGHT = 0.8  # of the +sin x branch
_DS1_LOG_SCALE = 0.25  # sigma of the log-normal for x >= 0
_DS2_SCALE = 0.15  # y ~ N(sin x, (0.15 sigmoid(x))^2)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _uniform_x(
    num: int, low: float, high: float, generator: torch.Generator | None,
    dtype: torch.dtype | None, device: torch.device | str | None,
) -> Tensor:
    dt = dtype or torch.get_default_dtype()
    return low + (high - low) * torch.rand((num, 1), generator=generator, dtype=dt, device=device)


def _normal_log_prob(y: Tensor, mean: Tensor, scale: Tensor | float) -> Tensor:
    scale = torch.as_tensor(scale, dtype=y.dtype, device=y.device)
    return -0.5 * ((y - mean) / scale) ** 2 - scale.log() - _LOG_SQRT_2PI


def _check_pair(x: Tensor, y: Tensor) -> None:
    check_tensor(x, "x", min_ndim=0)
    check_tensor(y, "y", min_ndim=0)
    try:
        torch.broadcast_shapes(x.shape, y.shape)
    except RuntimeError as err:
        raise ValueError(
            f"x and y must broadcast; got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        ) from err


def gustafsson_ds1(
    num: int = 2000,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Draw ds1: two branches for :math:`x < 0`, a skewed log-normal for :math:`x \ge 0`.

    :math:`x \sim U(-3, 3)`; for :math:`x < 0`,
    :math:`y \sim 0.8\,N(\sin x, 0.075^2) + 0.2\,N(-\sin x, 0.075^2)`; for :math:`x \ge 0`,
    :math:`y \sim \mathrm{LogNormal}(0, 0.25^2) - 1`. A Gaussian regressor cannot fit either
    half; the optimal test NLL is :math:`\mathbb{E}_x H(y|x) = -0.326` nats.

    Args:
        num: number of pairs (the paper trains on 2,000).
        generator: random source. dtype, device: of the result.

    Returns:
        ``(x, y)``, each ``(num, 1)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> x, y = eb.data.gustafsson_ds1(5, generator=torch.Generator().manual_seed(0))
        >>> x.shape, y.shape
        (torch.Size([5, 1]), torch.Size([5, 1]))
    """
    check_positive_int(num, "num")
    check_generator(generator)
    x = _uniform_x(num, -3.0, 3.0, generator, dtype, device)
    branch = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=device)
    sign = torch.where(branch < _DS1_WEIGHT, 1.0, -1.0).to(x.dtype)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    left = sign * x.sin() + _DS1_SCALE * noise
    right = (_DS1_LOG_SCALE * noise).exp() - 1.0
    return x, torch.where(x < 0, left, right)


def gustafsson_ds1_log_prob(x: Tensor, y: Tensor) -> Tensor:
    r"""Return the exact :math:`\log p(y|x)` of :func:`gustafsson_ds1` (shapes broadcast).

    Example:
        >>> import torch, ebmlab as eb
        >>> round(float(eb.data.gustafsson_ds1_log_prob(torch.tensor(1.0), torch.tensor(0.0))), 4)
        0.4674
    """
    _check_pair(x, y)
    s = x.sin()
    left = torch.logaddexp(
        math.log(_DS1_WEIGHT) + _normal_log_prob(y, s, _DS1_SCALE),
        math.log(1 - _DS1_WEIGHT) + _normal_log_prob(y, -s, _DS1_SCALE),
    )
    shifted = y + 1.0
    is_positive = shifted > 0
    log_shifted = torch.where(is_positive, shifted, torch.ones_like(shifted)).log()
    right = _normal_log_prob(log_shifted, torch.zeros_like(log_shifted), _DS1_LOG_SCALE)
    right = torch.where(is_positive, right - log_shifted, torch.full_like(right, -math.inf))
    return torch.where(x < 0, left, right)


def gustafsson_ds2(
    num: int = 2000,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Draw ds2: :math:`y \sim N(\sin x, (0.15\,\sigma(x))^2)`, :math:`x \sim U(-3, 3)`.

    Unimodal with a noise level that grows twenty-fold across the range (σ is the logistic
    sigmoid): the optimal test NLL is :math:`\mathbb{E}_x H(y|x) = -1.486` nats.

    Args:
        num: number of pairs (the paper trains on 2,000).
        generator: random source. dtype, device: of the result.

    Returns:
        ``(x, y)``, each ``(num, 1)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> x, y = eb.data.gustafsson_ds2(1000, generator=torch.Generator().manual_seed(0))
        >>> bool((y - x.sin()).abs().max() < 0.6)
        True
    """
    check_positive_int(num, "num")
    check_generator(generator)
    x = _uniform_x(num, -3.0, 3.0, generator, dtype, device)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    return x, x.sin() + _DS2_SCALE * torch.sigmoid(x) * noise


def gustafsson_ds2_log_prob(x: Tensor, y: Tensor) -> Tensor:
    r"""Return the exact :math:`\log p(y|x)` of :func:`gustafsson_ds2` (shapes broadcast).

    Example:
        >>> import torch, ebmlab as eb
        >>> round(float(eb.data.gustafsson_ds2_log_prob(torch.tensor(0.0), torch.tensor(0.0))), 4)
        1.6713
    """
    _check_pair(x, y)
    return _normal_log_prob(y, x.sin(), _DS2_SCALE * torch.sigmoid(x))


def step_function(
    num: int,
    *,
    low: float = -1.0,
    high: float = 1.0,
    scale: float = 0.05,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Draw a step: :math:`y` is ``low`` for :math:`x < 0` and ``high`` after, plus noise.

    :math:`x \sim U(-1, 1)`, :math:`\varepsilon \sim N(0, \sigma^2)`. A smooth regressor
    must cross the jump through values no data point takes; an energy model keeps it sharp.

    Args:
        num: number of pairs.
        low, high: the two levels.
        scale: noise standard deviation :math:`\sigma`.
        generator: random source. dtype, device: of the result.

    Returns:
        ``(x, y)``, each ``(num, 1)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = eb.data.step_function(100, scale=1e-9, generator=g)
        >>> sorted(set(y.flatten().round().tolist()))
        [-1.0, 1.0]
    """
    check_positive_int(num, "num")
    check_positive(scale, "scale")
    check_generator(generator)
    x = _uniform_x(num, -1.0, 1.0, generator, dtype, device)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    level = torch.where(x < 0, low, high).to(x.dtype)
    return x, level + scale * noise


def circle(
    num: int,
    *,
    radius: float = 1.0,
    scale: float = 0.02,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Draw a circle as a relation: :math:`x = r\cos\theta`, :math:`y = r\sin\theta + \varepsilon`.

    :math:`\theta \sim U(0, 2\pi)`: every :math:`|x| < r` has the two answers
    :math:`y = \pm\sqrt{r^2 - x^2}`, whose average 0 is never right.

    Args:
        num: number of pairs.
        radius: the radius r.
        scale: noise standard deviation of y.
        generator: random source. dtype, device: of the result.

    Returns:
        ``(x, y)``, each ``(num, 1)``.

    Example:
        >>> import torch, ebmlab as eb
        >>> x, y = eb.data.circle(200, scale=1e-9, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.allclose(x**2 + y**2, torch.ones(200, 1), atol=1e-6))
        True
    """
    check_positive_int(num, "num")
    check_positive(radius, "radius")
    check_positive(scale, "scale")
    check_generator(generator)
    dt = dtype or torch.get_default_dtype()
    theta = 2 * math.pi * torch.rand((num, 1), generator=generator, dtype=dt, device=device)
    noise = torch.randn((num, 1), generator=generator, dtype=dt, device=device)
    return radius * theta.cos(), radius * theta.sin() + scale * noise
