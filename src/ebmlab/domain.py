"""``Box``: a rectangular domain for y (or z), shared by inference, Gibbs and plots."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive_int

__all__ = ["Box", "check_box", "check_grid_size", "grid_sizes", "MAX_GRID_POINTS", "MAX_GRID_CELLS"]

Bound = float | Sequence[float] | Tensor

# Grids past these sizes are refused before anything is allocated: a materialised grid
# (Box.grid, eb.latent.Grid) holds its points, 2**30 of them are 8 GiB of float32 in 2-D;
# the streamed partition.Grid holds one chunk but takes time linear in its cells.
MAX_GRID_POINTS = 2**30
MAX_GRID_CELLS = 2**36


def grid_sizes(num: object, dim: int, name: str = "num") -> list[int]:
    """Return the cells per axis: ``num`` repeated ``dim`` times or its entries, all ints >= 1."""
    if isinstance(num, (str, bytes)) or not isinstance(num, Iterable):
        sizes = [num] * dim
    else:
        sizes = list(num)
    if len(sizes) != dim:
        raise ValueError(f"{name} must be an int or have {dim} entries; got {len(sizes)}")
    for n in sizes:
        check_positive_int(n, name)
    return sizes  # type: ignore[return-value]


def check_grid_size(sizes: Sequence[int], limit: int = MAX_GRID_POINTS, name: str = "num") -> int:
    """Return the number of grid points, refusing (before allocating) more than ``limit``."""
    total = math.prod(int(n) for n in sizes)
    if total > limit:
        raise ValueError(
            f"{name}={list(sizes)} makes a grid of {total:.3g} points, more than the limit "
            f"{limit:.3g} (2**{int(math.log2(limit))}); lower {name} (a grid's cost grows as "
            "the product of its sizes), or use a sampling estimator in higher dimensions"
        )
    return total


class Box:
    r"""The axis-aligned box :math:`\{y : low \le y \le high\}` with event shape ``low.shape``.

    Args:
        low: lower corner; a number (1-D box), a sequence or a tensor of any event shape.
        high: upper corner, broadcast to the shape of ``low``; strictly above ``low``.
            Floating tensor corners keep their dtype (nothing is cast); numbers and lists take
            the default dtype.

    Raises:
        ValueError: if the corners are empty, not finite or ``high <= low`` somewhere.
        TypeError: complex or bool corners.

    Example:
        >>> import ebmlab as eb
        >>> box = eb.Box([-3.0, -2.0], [3.0, 2.0])
        >>> box.shape, box.volume
        ((2,), 24.0)
        >>> box.grid(3).points.shape
        torch.Size([9, 2])
    """

    def __init__(self, low: Bound, high: Bound) -> None:
        dtype = _corner_dtype(low, high)  # floating tensors keep their dtype: nothing is cast
        low_t = torch.as_tensor(low, dtype=dtype).detach()
        high_t = torch.as_tensor(high, dtype=dtype).detach()
        if low_t.ndim == 0:
            low_t = low_t.reshape(1)
        if low_t.numel() == 0:
            raise ValueError(f"Box needs at least one coordinate; got low of shape "
                             f"{tuple(low_t.shape)}")
        try:
            high_t = torch.broadcast_to(high_t, low_t.shape).clone()
        except RuntimeError as err:
            raise ValueError(
                f"high has shape {tuple(high_t.shape)}, which does not broadcast to low's "
                f"shape {tuple(low_t.shape)}"
            ) from err
        if not (torch.isfinite(low_t).all() and torch.isfinite(high_t).all()):
            raise ValueError(f"Box corners must be finite; got low={low_t}, high={high_t}")
        if not (high_t > low_t).all():
            raise ValueError(f"Box needs high > low everywhere; got low={low_t}, high={high_t}")
        self.low = low_t
        self.high = high_t

    def __repr__(self) -> str:
        return f"Box(low={self.low.tolist()}, high={self.high.tolist()})"

    @property
    def shape(self) -> tuple[int, ...]:
        """The event shape of a point in the box."""
        return tuple(self.low.shape)

    @property
    def dim(self) -> int:
        """The number of coordinates."""
        return self.low.numel()

    @property
    def volume(self) -> float:
        """The Lebesgue volume :math:`\\prod (high - low)`."""
        return float((self.high - self.low).prod())

    @property
    def diameter(self) -> float:
        """The length of the box's diagonal."""
        return float((self.high - self.low).norm())

    def bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(low, high)`` with the dtype and device of ``like``."""
        return (
            self.low.to(dtype=like.dtype, device=like.device),
            self.high.to(dtype=like.dtype, device=like.device),
        )

    def contains(self, y: Tensor) -> Tensor:
        """Return a bool tensor of shape ``y.shape[:-len(shape)]``: which points lie inside."""
        low, high = self.bounds(y)
        inside = (y >= low) & (y <= high)
        return inside.flatten(start_dim=y.ndim - len(self.shape)).all(-1)

    def project(self, y: Tensor) -> Tensor:
        """Return the nearest point of the box (coordinate-wise clamp)."""
        low, high = self.bounds(y)
        return torch.maximum(torch.minimum(y, high), low)

    def sample(
        self,
        *sample_shape: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw points uniformly; returns ``(*sample_shape, *shape)``."""
        check_generator(generator)
        for n in sample_shape:
            check_positive_int(n, "sample_shape", minimum=0)
        dtype = dtype or self.low.dtype
        u = torch.rand(
            (*sample_shape, *self.shape), generator=generator, dtype=dtype, device=device
        )
        low = self.low.to(dtype=dtype, device=u.device)
        high = self.high.to(dtype=dtype, device=u.device)
        return low + (high - low) * u

    def grid(
        self,
        num: int | Sequence[int],
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> BoxGrid:
        """Return the midpoint grid with ``num`` cells per coordinate.

        Cell centres are used (not the corners), so the grid is the midpoint quadrature rule
        for integrals over the box: error :math:`O(h^2)` for smooth integrands.
        """
        sizes = grid_sizes(num, self.dim)
        check_grid_size(sizes)
        dtype = dtype or self.low.dtype
        low = self.low.reshape(-1).to(dtype=dtype, device=device)
        high = self.high.reshape(-1).to(dtype=dtype, device=device)
        axes = []
        for i, n in enumerate(sizes):
            h = (high[i] - low[i]) / n
            axes.append(low[i] + h * (torch.arange(n, dtype=dtype, device=device) + 0.5))
        mesh = torch.meshgrid(*axes, indexing="ij")
        points = torch.stack([m.reshape(-1) for m in mesh], -1).reshape(-1, *self.shape)
        cell = float(math.prod(float(high[i] - low[i]) / n for i, n in enumerate(sizes)))
        return BoxGrid(points=points, axes=axes, cell_volume=cell, sizes=tuple(sizes))


def _corner_dtype(low: object, high: object) -> torch.dtype:
    """The dtype of a box's corners: that of its floating tensor corners, else the default."""
    dtypes = []
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, Tensor):
            if value.is_complex() or value.dtype == torch.bool:
                raise TypeError(f"{name} must be real numbers; got a tensor of dtype {value.dtype}")
            if value.is_floating_point():
                dtypes.append(value.dtype)
    if not dtypes:
        return torch.get_default_dtype()
    return dtypes[0] if len(dtypes) == 1 else torch.promote_types(*dtypes)


class BoxGrid:
    """A midpoint grid on a :class:`Box`: ``points`` (N, *shape), per-axis centres, cell volume."""

    def __init__(
        self, points: Tensor, axes: list[Tensor], cell_volume: float, sizes: tuple[int, ...]
    ) -> None:
        self.points = points
        self.axes = axes
        self.cell_volume = cell_volume
        self.sizes = sizes


def check_box(value: object, name: str = "domain", *, allow_none: bool = True) -> Box | None:
    """Return ``value`` if it is an ``ebmlab.Box`` (or ``None`` when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, Box):
        expected = "an ebmlab.Box or None" if allow_none else "an ebmlab.Box"
        raise TypeError(f"{name} must be {expected}; got {type(value).__name__}")
    return value
