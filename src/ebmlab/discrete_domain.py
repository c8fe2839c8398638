r"""Discrete domains: ``Binary`` :math:`\{0,1\}^d` and ``Categorical`` :math:`\{0..n-1\}^d`.

Values are stored as floating tensors holding whole numbers (the library's y is floating), so
a binary or categorical y goes through every energy, sampler and loss unchanged. Both domains
enumerate their points in chunks (:meth:`Categorical.chunks`), refusing sets larger than
:data:`MAX_ENUMERATION` points.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from ebmlab._checks import check_generator, check_positive_int

__all__ = ["Categorical", "Binary", "MAX_ENUMERATION", "codes", "check_labels"]

# 2^24 points: enumerating them (in chunks) takes seconds; beyond that exact sums are the wrong
# tool (use a sampler, AIS or a structured energy with dynamic programming).
MAX_ENUMERATION = 1 << 24


def codes(
    start: int,
    stop: int,
    num_sites: int,
    num_classes: int = 2,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Return the points of index ``start .. stop - 1`` of :math:`\{0..n-1\}^d`, ``(N, d)``.

    Point ``i`` has digit ``i // n**j % n`` at site ``j`` (site 0 varies fastest).

    Example:
        >>> codes(0, 4, 2).tolist()
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    """
    index = torch.arange(start, stop, device=device)
    if num_classes == 2:
        out = (index.unsqueeze(1) >> torch.arange(num_sites, device=device)) & 1
    else:
        powers = num_classes ** torch.arange(num_sites, device=device)
        out = index.unsqueeze(1).div(powers, rounding_mode="floor") % num_classes
    return out.to(dtype or torch.get_default_dtype())


def check_labels(y: Tensor, num_classes: int, name: str = "y") -> Tensor:
    """Return ``y`` as a long tensor after checking it holds whole numbers in ``[0, n)``.

    One validation pass (a host synchronisation): call it at public entry points only.

    Raises:
        TypeError: if ``y`` is not a tensor.
        ValueError: if an entry is not a whole number in ``0 .. num_classes - 1``.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(y).__name__}")
    if y.is_floating_point():
        bad = (y != y.round()) | (y < 0) | (y > num_classes - 1)
    else:
        bad = (y < 0) | (y > num_classes - 1)
    if bool(bad.any()):
        first = y[bad].flatten()[:3].tolist()
        raise ValueError(
            f"{name} must hold labels in 0..{num_classes - 1} (whole numbers); got values "
            f"such as {first}"
        )
    return y.long()


class Categorical:
    r"""The finite domain :math:`\{0, \dots, n-1\}^{d}` of ``d`` categorical sites.

    Args:
        num_sites: the number of sites d (or an event shape, e.g. ``(8, 8)``).
        num_classes: the number of values n per site (at least 2).

    Raises:
        ValueError: if a size is below its minimum.

    Example:
        >>> import ebmlab as eb
        >>> domain = eb.Categorical(2, 3)
        >>> domain.size, domain.points().shape
        (9, torch.Size([9, 2]))
    """

    def __init__(self, num_sites: int | tuple[int, ...], num_classes: int) -> None:
        shape = (num_sites,) if isinstance(num_sites, int) else tuple(num_sites)
        for s in shape:
            check_positive_int(s, "num_sites")
        self.shape: tuple[int, ...] = shape
        self.num_classes = check_positive_int(num_classes, "num_classes", minimum=2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._args()})"

    def _args(self) -> str:
        sites = self.shape[0] if len(self.shape) == 1 else self.shape
        return f"{sites}, num_classes={self.num_classes}"

    @property
    def num_sites(self) -> int:
        """The number of sites d (the product of ``shape``)."""
        return math.prod(self.shape)

    @property
    def size(self) -> int:
        """The number of points :math:`n^d` (an exact Python int, possibly huge)."""
        return self.num_classes**self.num_sites

    def check_size(self, limit: int = MAX_ENUMERATION) -> int:
        """Return :attr:`size`, or raise ``ValueError`` if it exceeds ``limit``."""
        if self.size > limit:
            raise ValueError(
                f"{self!r} has {self.num_classes}^{self.num_sites} points, more than the "
                f"enumeration limit {limit} (= 2^{int(math.log2(limit))}); use a sampler "
                "(eb.samplers.Gibbs), AIS or dynamic programming instead"
            )
        return self.size

    def chunks(
        self,
        chunk_size: int = 65536,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Iterator[Tensor]:
        """Yield every point, ``(chunk, *shape)`` at a time, in index order.

        Raises:
            ValueError: if the domain has more than :data:`MAX_ENUMERATION` points.
        """
        n = self.check_size()
        check_positive_int(chunk_size, "chunk_size")
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            c = codes(start, stop, self.num_sites, self.num_classes, dtype=dtype, device=device)
            yield c.reshape(stop - start, *self.shape)

    def points(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """Return every point, ``(size, *shape)`` (limited to :data:`MAX_ENUMERATION`)."""
        n = self.check_size()
        out = codes(0, n, self.num_sites, self.num_classes, dtype=dtype, device=device)
        return out.reshape(n, *self.shape)

    def contains(self, y: Tensor) -> Tensor:
        """Return a bool tensor of shape ``y.shape[:-len(shape)]``: which rows lie in the set."""
        inside = (y == y.round()) & (y >= 0) & (y <= self.num_classes - 1)
        return inside.flatten(start_dim=y.ndim - len(self.shape)).all(-1)

    def sample(
        self,
        *sample_shape: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw points uniformly; returns ``(*sample_shape, *shape)``."""
        check_generator(generator)
        out = torch.randint(
            self.num_classes, (*sample_shape, *self.shape), generator=generator, device=device
        )
        return out.to(dtype or torch.get_default_dtype())

    def one_hot(self, y: Tensor) -> Tensor:
        """Return ``y`` ``(B, *shape)`` as one-hot ``(B, *shape, num_classes)`` (same dtype)."""
        return torch.nn.functional.one_hot(y.long(), self.num_classes).to(y.dtype)


class Binary(Categorical):
    r"""The domain :math:`\{0, 1\}^{d}` of ``d`` binary sites.

    Args:
        num_sites: the number of sites d (or an event shape).

    Example:
        >>> import ebmlab as eb
        >>> eb.Binary(3).points().tolist()[:3]
        [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """

    def __init__(self, num_sites: int | tuple[int, ...]) -> None:
        super().__init__(num_sites, 2)

    def _args(self) -> str:
        return str(self.shape[0] if len(self.shape) == 1 else self.shape)

    def sample(
        self,
        *sample_shape: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw points uniformly (fair coins); returns ``(*sample_shape, *shape)``."""
        check_generator(generator)
        u = torch.rand((*sample_shape, *self.shape), generator=generator, device=device,
                       dtype=dtype or torch.get_default_dtype())
        return (u < 0.5).to(u.dtype)
