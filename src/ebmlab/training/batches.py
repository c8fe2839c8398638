"""Stateless mini-batching: the batch of step s depends only on (seed, s), so resuming is exact."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ebmlab._checks import check_positive_int, check_tensor

__all__ = ["Batches", "split_data"]


def split_data(data: Any) -> tuple[Tensor, Tensor | None]:
    """Return ``(y, x)`` from a tensor ``y``, a pair ``(x, y)`` or a mapping ``{"y", "x"}``.

    A pair is read in the order the ``eb.data`` generators return it: inputs first, answers
    second, ``(x, y)``.
    """
    if isinstance(data, Tensor):
        y, x = data, None
    elif isinstance(data, Mapping):
        unknown = set(data) - {"x", "y"}
        if "y" not in data or unknown:
            raise ValueError(
                f"data as a mapping needs key 'y' and optionally 'x'; got keys {sorted(data)}"
            )
        y, x = data["y"], data.get("x")
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(
            "data must be a tensor y (N, *y_shape), a pair (x, y) or a mapping "
            f"{{'y': ..., 'x': ...}}; got {type(data).__name__}"
        )
    check_tensor(y, "data y")
    if x is not None:
        check_tensor(x, "data x")
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"data x has {x.shape[0]} rows but data y has {y.shape[0]}; expected equal"
            )
        if x.device != y.device:
            raise ValueError(f"data x is on {x.device} but data y is on {y.device}")
    return y, x


class Batches:
    """Mini-batches drawn without replacement, reshuffled each epoch from ``(seed, epoch)``.

    Step ``s`` (0-based) uses epoch ``e = s // (N // B)``; its permutation is drawn from a fresh
    generator seeded with ``(seed, e)``, so no generator state needs saving and any step's batch
    can be recomputed. With N ≤ B every step uses the whole data set.

    Args:
        y: answers (N, *y_shape). x: inputs (N, *x_shape) or ``None``.
        batch_size: rows per batch B.
        seed: the run seed.
    """

    def __init__(self, y: Tensor, x: Tensor | None, batch_size: int, seed: int) -> None:
        self.y, self.x = y, x
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = int(seed)
        self.num = y.shape[0]
        self.is_full = self.num <= self.batch_size
        self.steps_per_epoch = max(1, self.num // self.batch_size)
        self._epoch = -1
        self._perm: Tensor | None = None

    def indices(self, step: int) -> Tensor | None:
        """Return the row indices of step ``step`` (``None`` for the whole data set)."""
        if self.is_full:
            return None
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
            self._perm = torch.randperm(self.num, generator=g).to(self.y.device)
            self._epoch = epoch
        return self._perm[k * self.batch_size : (k + 1) * self.batch_size]

    def __call__(self, step: int) -> tuple[Tensor, Tensor | None]:
        """Return ``(y, x)`` of step ``step``."""
        idx = self.indices(step)
        if idx is None:
            return self.y, self.x
        return self.y[idx], None if self.x is None else self.x[idx]
