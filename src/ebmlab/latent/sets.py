"""Finite latent sets with quadrature weights: ``Grid``, ``Discrete`` and ``MonteCarlo``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive_int, check_tensor
from ebmlab._random import sample_distribution
from ebmlab.domain import check_grid_size

__all__ = ["LatentSet", "Grid", "Discrete", "MonteCarlo", "REDUCTIONS"]

Bound = float | Sequence[float] | Tensor
Sampler = Callable[[int, torch.Generator | None], Tensor] | torch.distributions.Distribution
REDUCTIONS = ("mean", "integral")


class LatentSet:
    """Base class of a finite set of latent values with quadrature weights.

    Subclasses set ``z_shape`` and implement :meth:`_points` (float64 or the stored dtype) and
    :meth:`_integral_log_weights`. Points are cached per dtype and device.
    """

    z_shape: tuple[int, ...]

    def __init__(self) -> None:
        self._cache: dict[tuple[object, ...], Tensor] = {}

    @property
    def size(self) -> int:
        """The number of points :math:`|Z|`."""
        return int(self._points().shape[0])

    def _points(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _integral_log_weights(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def points(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """Return the set as a ``(N, *z_shape)`` tensor in ``dtype`` on ``device``."""
        key = ("points", dtype, str(device))
        if key not in self._cache:
            self._cache[key] = self._points().to(dtype=dtype or torch.get_default_dtype(),
                                                 device=device)
        return self._cache[key]

    def log_weights(
        self,
        reduction: str = "mean",
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        r"""Return ``(N,)`` log weights: :math:`-\log N` for ``"mean"``, quadrature otherwise."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        key = (reduction, dtype, str(device))
        if key not in self._cache:
            if reduction == "mean":
                n = self.size
                w = torch.full((n,), -math.log(n), dtype=torch.float64)
            else:
                w = self._integral_log_weights()
            self._cache[key] = w.to(dtype=dtype or torch.get_default_dtype(), device=device)
        return self._cache[key]


def _as_vector(value: Bound, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(-1).clone()
    if t.numel() == 0:
        raise ValueError(f"{name} must hold at least one number; got an empty value")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite; got {t.tolist()}")
    return t


class Grid(LatentSet):
    r"""A tensor-product grid over a box of z values (for small z dimensions).

    A non-periodic axis holds ``num`` equally spaced points from ``low`` to ``high``, both
    included, with trapezoid weights; a periodic axis excludes its end point (it is the
    start point again), so ``Grid(0, 2π, 48, periodic=True)`` is :math:`k\pi/24`,
    :math:`k = 0..47`, with equal weights :math:`2\pi/48` (the trapezoid rule on a period,
    exponentially accurate for smooth periodic integrands).

    Args:
        low: lower end of each axis; a number for a 1-D z (``z_shape = (1,)``) or a sequence.
        high: upper end of each axis, above ``low``.
        num: points per axis (an int for all axes or one per axis); at least 1 periodic,
            at least 2 otherwise.
        periodic: whether the axes are periods (one flag for all axes).

    Raises:
        ValueError: non-finite or empty bounds, ``high <= low``, or too few points.

    Example:
        >>> import math, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
        >>> grid.size, grid.z_shape
        (48, (1,))
        >>> round(float(grid.points()[1, 0] * 24 / math.pi), 12)
        1.0
    """

    def __init__(
        self, low: Bound, high: Bound, num: int | Sequence[int], periodic: bool = False
    ) -> None:
        super().__init__()
        low_t = _as_vector(low, "low")
        high_t = _as_vector(high, "high")
        if high_t.numel() == 1 and low_t.numel() > 1:
            high_t = high_t.expand_as(low_t).clone()
        if low_t.numel() == 1 and high_t.numel() > 1:
            low_t = low_t.expand_as(high_t).clone()
        if low_t.shape != high_t.shape:
            raise ValueError(
                f"low and high must have the same length; got {low_t.numel()} and "
                f"{high_t.numel()}"
            )
        if not (high_t > low_t).all():
            raise ValueError(
                f"Grid needs high > low on every axis; got low={low_t.tolist()}, "
                f"high={high_t.tolist()}"
            )
        d = low_t.numel()
        sizes = list(num) if isinstance(num, Iterable) else [num] * d
        if len(sizes) != d:
            raise ValueError(f"num must be an int or have {d} entries; got {len(sizes)}")
        minimum = 1 if periodic else 2
        for n in sizes:
            if isinstance(n, int) and not isinstance(n, bool) and n < minimum:
                kind = "a periodic" if periodic else "a non-periodic"
                raise ValueError(
                    f"num must be >= {minimum} on {kind} axis (an empty grid has no z to "
                    f"reduce over); got {n}"
                )
            check_positive_int(n, "num", minimum=minimum)
        check_grid_size(sizes)  # refused before the points are made
        self.low, self.high = low_t, high_t
        self.num = tuple(sizes)
        self.periodic = bool(periodic)
        self.z_shape = (d,)

    def __repr__(self) -> str:
        return (
            f"Grid(low={self.low.tolist()}, high={self.high.tolist()}, num={list(self.num)}, "
            f"periodic={self.periodic})"
        )

    @property
    def size(self) -> int:
        return math.prod(self.num)

    def axes(self) -> list[Tensor]:
        """Return the float64 points of each axis."""
        out = []
        for lo, hi, n in zip(self.low.tolist(), self.high.tolist(), self.num, strict=True):
            if self.periodic:
                out.append(lo + (hi - lo) * torch.arange(n, dtype=torch.float64) / n)
            else:
                out.append(torch.linspace(lo, hi, n, dtype=torch.float64))
        return out

    def _points(self) -> Tensor:
        mesh = torch.meshgrid(*self.axes(), indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], -1)  # (N, d)

    def _integral_log_weights(self) -> Tensor:
        logs = []
        for lo, hi, n in zip(self.low.tolist(), self.high.tolist(), self.num, strict=True):
            if self.periodic:
                w = torch.full((n,), (hi - lo) / n, dtype=torch.float64)
            else:
                w = torch.full((n,), (hi - lo) / (n - 1), dtype=torch.float64)
                w[0] = w[-1] = 0.5 * w[0]
            logs.append(w.log())
        mesh = torch.meshgrid(*logs, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], -1).sum(-1)


class Discrete(LatentSet):
    r"""A finite set of latent values :math:`\{z_1, \dots, z_N\}`.

    Args:
        values: ``(N, *z_shape)``; a 1-D tensor is N scalar latents with ``z_shape = (1,)``.
        weights: optional positive ``(N,)`` measure of each value for
            ``reduction="integral"`` (the counting measure, all ones, by default).

    Example:
        >>> import torch, ebmlab as eb
        >>> eb.latent.Discrete(torch.tensor([0.0, 1.0, 2.0])).points().shape
        torch.Size([3, 1])
    """

    def __init__(self, values: Tensor, weights: Tensor | None = None) -> None:
        super().__init__()
        check_tensor(values, "values")
        if values.shape[0] == 0:
            raise ValueError("values is empty; a Discrete latent set needs at least one z")
        if not torch.isfinite(values).all():
            raise ValueError("values must be finite")
        self.values = values.detach().reshape(-1, 1) if values.ndim == 1 else values.detach()
        self.z_shape = tuple(self.values.shape[1:])
        if weights is not None:
            check_tensor(weights, "weights")
            if weights.shape != (self.values.shape[0],):
                raise ValueError(
                    f"weights must have shape (N,) = ({self.values.shape[0]},); got "
                    f"{tuple(weights.shape)}"
                )
            if not (weights > 0).all() or not torch.isfinite(weights).all():
                raise ValueError("weights must be finite and > 0")
            weights = weights.detach()
        self.weights = weights

    def __repr__(self) -> str:
        return f"Discrete(N={self.values.shape[0]}, z_shape={self.z_shape})"

    def _points(self) -> Tensor:
        return self.values

    def _integral_log_weights(self) -> Tensor:
        if self.weights is None:
            return torch.zeros(self.values.shape[0], dtype=torch.float64)
        return self.weights.log()


class MonteCarlo(LatentSet):
    r"""``num`` latent values drawn once from a sampler and then held fixed.

    Holding the draw fixed (common random numbers) keeps the free energy a deterministic
    function of y, so that it can be minimised and differentiated; :meth:`resample` draws
    again. With a ``torch.distributions.Distribution`` q, ``reduction="integral"`` is the
    importance-sampling estimate :math:`\int e^{-\beta E} dz \approx \frac1N \sum_k
    e^{-\beta E(z_k)} / q(z_k)`; with a plain callable (no density) the integral is taken
    against the sampler's own law, the same as ``"mean"``.

    Args:
        sampler: a ``Distribution`` or a callable ``sampler(n, generator) -> (n, *z_shape)``;
            samples of shape ``(n,)`` are taken as ``(n, 1)``.
        num: the number of draws N.
        generator: random source of the draws (a ``Distribution`` is sampled under a fork of
            the global RNG seeded from it, so the draw is reproducible too).

    Example:
        >>> import torch, ebmlab as eb
        >>> mc = eb.latent.MonteCarlo(torch.distributions.Normal(0.0, 1.0), 100,
        ...                           generator=torch.Generator().manual_seed(0))
        >>> mc.points().shape
        torch.Size([100, 1])
    """

    def __init__(
        self, sampler: Sampler, num: int, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not (isinstance(sampler, torch.distributions.Distribution) or callable(sampler)):
            raise TypeError(
                "sampler must be a torch.distributions.Distribution or a callable "
                f"(n, generator) -> (n, *z_shape); got {type(sampler).__name__}"
            )
        self.sampler = sampler
        self.num = check_positive_int(num, "num")
        self.generator = check_generator(generator)
        self._draw: tuple[Tensor, Tensor | None] | None = None

    def __repr__(self) -> str:
        return f"MonteCarlo({self.sampler!r}, num={self.num})"

    @property
    def z_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self._points().shape[1:])

    @property
    def size(self) -> int:
        return self.num

    def resample(self, generator: torch.Generator | None = None) -> None:
        """Draw a fresh set of ``num`` values (from ``generator`` or the stored one)."""
        self._draw = None
        self._cache.clear()
        if generator is not None:
            self.generator = check_generator(generator)

    def _sample(self) -> tuple[Tensor, Tensor | None]:
        if isinstance(self.sampler, torch.distributions.Distribution):
            z = sample_distribution(self.sampler, (self.num,), self.generator)
            log_q = self.sampler.log_prob(z).reshape(self.num, -1).sum(-1)
        else:
            z = self.sampler(self.num, self.generator)
            log_q = None
        check_tensor(z, "sampler output")
        if z.shape[0] != self.num:
            raise ValueError(
                f"sampler returned shape {tuple(z.shape)}; expected (num, *z_shape) with "
                f"num = {self.num}"
            )
        z = z.detach().reshape(-1, 1) if z.ndim == 1 else z.detach()
        return z, None if log_q is None else log_q.detach()

    def _points(self) -> Tensor:
        if self._draw is None:
            self._draw = self._sample()
        return self._draw[0]

    def _integral_log_weights(self) -> Tensor:
        self._points()
        assert self._draw is not None
        log_q = self._draw[1]
        base = torch.full((self.num,), -math.log(self.num), dtype=torch.float64)
        return base if log_q is None else base - log_q.to(torch.float64)
