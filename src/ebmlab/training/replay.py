"""``ReplayBuffer``: a fixed-size store of persistent chains with re-initialisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ebmlab._checks import check_fraction, check_generator, check_positive_int, check_tensor
from ebmlab.domain import Box

__all__ = ["ReplayBuffer", "DataRestarts"]

Init = Box | Callable[[int, torch.Generator | None], Tensor]


class ReplayBuffer:
    r"""Persistent chains for contrastive training: start MCMC from past samples.

    The buffer holds ``capacity`` samples, filled from ``init`` on first use. :meth:`sample`
    draws ``batch_size`` slots uniformly with replacement and replaces each drawn sample by a
    fresh draw from ``init`` with probability ``reinit_fraction``; after running the chains,
    :meth:`update` writes the results back into the same slots. :meth:`push` writes new
    samples into the oldest slots instead (a ring). All randomness comes from the
    ``generator`` passed in, so the buffer is deterministic under a seeded generator, and
    :meth:`state_dict` holds tensors only (it can be saved with ``safetensors``).

    Args:
        capacity: the number of stored samples.
        init: where fresh samples come from: an :class:`ebmlab.Box` (uniform) or a callable
            ``init(num, generator) -> (num, *y_shape)``.
        reinit_fraction: probability that a drawn sample is replaced by a fresh one.
        y_shape: event shape of a sample; taken from the box when ``init`` is a ``Box``.
        dtype, device: of the stored samples (default dtype and CPU by default).

    Raises:
        ValueError: if ``capacity`` < 1, ``reinit_fraction`` is outside [0, 1] or no
            ``y_shape`` can be found.

    References:
        Du and Mordatch, "Implicit Generation and Generalization in Energy-Based Models",
        NeurIPS, 2019, arXiv:1903.08689 (the buffer and the 5 % re-initialisation).

    Example:
        >>> import torch, ebmlab as eb
        >>> buffer = eb.training.ReplayBuffer(100, eb.Box([-1.0, -1.0], [1.0, 1.0]))
        >>> g = torch.Generator().manual_seed(0)
        >>> y0, index = buffer.sample(16, generator=g)
        >>> buffer.update(index, y0 * 0.5)
        >>> y0.shape, sorted(buffer.state_dict())
        (torch.Size([16, 2]), ['data', 'is_filled', 'position'])
    """

    def __init__(
        self,
        capacity: int,
        init: Init,
        *,
        reinit_fraction: float = 0.05,
        y_shape: tuple[int, ...] | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.capacity = check_positive_int(capacity, "capacity")
        if not (isinstance(init, Box) or callable(init)):
            raise TypeError(f"init must be an eb.Box or a callable; got {type(init).__name__}")
        reinit_fraction = check_fraction(reinit_fraction, "reinit_fraction")
        if y_shape is None:
            if not isinstance(init, Box):
                raise ValueError("y_shape is required when init is a callable")
            y_shape = init.shape
        self.init = init
        self.reinit_fraction = reinit_fraction
        self.y_shape = tuple(int(s) for s in y_shape)
        dtype = dtype or torch.get_default_dtype()
        self.data = torch.zeros((self.capacity, *self.y_shape), dtype=dtype, device=device)
        self.position = torch.zeros((), dtype=torch.long)
        self.is_filled = torch.zeros((), dtype=torch.bool)

    def __len__(self) -> int:
        return self.capacity

    def _fresh(self, num: int, generator: torch.Generator | None) -> Tensor:
        if isinstance(self.init, Box):
            return self.init.sample(
                num, generator=generator, dtype=self.data.dtype, device=self.data.device
            )
        out = self.init(num, generator)
        if not isinstance(out, Tensor) or tuple(out.shape) != (num, *self.y_shape):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"init returned {got}; expected ({num}, *y_shape={self.y_shape})")
        return out.to(dtype=self.data.dtype, device=self.data.device)

    def _fill(self, generator: torch.Generator | None) -> None:
        if not bool(self.is_filled):
            self.data.copy_(self._fresh(self.capacity, generator))
            self.is_filled.fill_(True)

    def sample(
        self, batch_size: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``batch_size`` starting points; returns ``(y0, index)`` for :meth:`update`.

        Each row is a stored sample, or with probability ``reinit_fraction`` a fresh one.
        """
        check_positive_int(batch_size, "batch_size")
        check_generator(generator)
        self._fill(generator)
        index = torch.randint(
            self.capacity, (batch_size,), generator=generator, device=self.data.device
        )
        y0 = self.data[index]
        is_fresh = torch.rand(batch_size, generator=generator, device=self.data.device)
        is_fresh = is_fresh < self.reinit_fraction
        fresh = self._fresh(batch_size, generator)
        y0 = torch.where(is_fresh.view(-1, *([1] * len(self.y_shape))), fresh, y0)
        return y0, index

    def update(self, index: Tensor, samples: Tensor) -> None:
        """Write ``samples`` (batch, *y_shape) back into the slots ``index`` (batch,)."""
        check_tensor(samples, "samples")
        if tuple(samples.shape[1:]) != self.y_shape or index.shape != samples.shape[:1]:
            raise ValueError(
                f"samples must have shape (len(index), *y_shape) = ({index.shape[0]}, "
                f"{', '.join(map(str, self.y_shape))}); got {tuple(samples.shape)}"
            )
        self.data[index] = samples.detach().to(self.data.dtype)

    def push(self, samples: Tensor, *, generator: torch.Generator | None = None) -> None:
        """Write ``samples`` (batch, *y_shape) over the oldest slots (a ring buffer)."""
        check_tensor(samples, "samples")
        if tuple(samples.shape[1:]) != self.y_shape:
            raise ValueError(
                f"samples must have shape (batch, *y_shape) = (batch, "
                f"{', '.join(map(str, self.y_shape))}); got {tuple(samples.shape)}"
            )
        self._fill(generator)
        samples = samples.detach()[-self.capacity :]
        index = (self.position + torch.arange(samples.shape[0])) % self.capacity
        self.data[index.to(self.data.device)] = samples.to(self.data.dtype)
        self.position = (self.position + samples.shape[0]) % self.capacity

    def state_dict(self) -> dict[str, Tensor]:
        """Return the buffer's contents as a dict of tensors (safetensors-compatible)."""
        return {
            "data": self.data.clone(),
            "position": self.position.clone().reshape(1),
            "is_filled": self.is_filled.clone().reshape(1).to(torch.uint8),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the contents saved by :meth:`state_dict`.

        Raises:
            ValueError: if a key is missing or the stored data has another shape.
        """
        missing = {"data", "position", "is_filled"} - set(state)
        if missing:
            raise ValueError(f"state is missing keys {sorted(missing)}")
        if tuple(state["data"].shape) != tuple(self.data.shape):
            raise ValueError(
                f"state['data'] has shape {tuple(state['data'].shape)}; this buffer holds "
                f"{tuple(self.data.shape)}"
            )
        self.data.copy_(state["data"])
        self.position = state["position"].reshape(()).to(torch.long).clone()
        self.is_filled = state["is_filled"].reshape(()).to(torch.bool).clone()


class DataRestarts:
    r"""Restarts for a :class:`ReplayBuffer` drawn from the training data itself.

    Called as ``init(num, generator)``, it returns ``num`` rows of ``data`` drawn uniformly
    with replacement: chains restarted where the data is, so that every region the data
    pushes down also gets fresh negatives (``default_negatives`` uses it).

    Args:
        data: the training answers (N, *y_shape), N >= 1.

    Example:
        >>> import torch, ebmlab as eb
        >>> from ebmlab.training.replay import DataRestarts
        >>> starts = DataRestarts(torch.arange(6.0).reshape(3, 2))
        >>> starts(4, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 2])
    """

    def __init__(self, data: Tensor) -> None:
        data = check_tensor(data, "data").detach()
        if data.ndim < 1 or data.shape[0] < 1:
            raise ValueError(f"data must have at least one row; got shape {tuple(data.shape)}")
        self.data = data
        self.y_shape = tuple(data.shape[1:])

    def __repr__(self) -> str:
        return f"DataRestarts({self.data.shape[0]} rows)"

    def __call__(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        index = torch.randint(self.data.shape[0], (num,), generator=generator,
                              device=self.data.device)
        return self.data[index]
