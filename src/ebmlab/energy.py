"""The energy contract: ``Energy`` F(x, y), ``LatentEnergy`` E(x, y, z) and ``FunctionEnergy``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ebmlab._checks import check_batch, check_same_device, check_tensor

__all__ = [
    "Energy",
    "LatentEnergy",
    "FunctionEnergy",
    "check_energy_output",
    "check_rows_independent",
]


def check_energy_output(out: object, batch: int, owner: str) -> Tensor:
    """Check that an energy returned a floating tensor of shape ``(batch,)``."""
    if not isinstance(out, Tensor):
        raise TypeError(f"{owner} returned {type(out).__name__}; expected a torch.Tensor")
    if not out.is_floating_point():
        raise TypeError(f"{owner} returned dtype {out.dtype}; expected a floating dtype")
    if out.shape != (batch,):
        raise ValueError(
            f"{owner} returned shape {tuple(out.shape)}; expected (B,) = ({batch},)"
        )
    return out


def check_rows_independent(
    forward: Callable[[Tensor, Tensor | None], Tensor],
    y: Tensor,
    x: Tensor | None,
    batch_energy: Tensor,
    owner: str,
) -> None:
    """Raise ``ValueError`` if row b of the energy depends on the other rows of the batch.

    ``batch_energy`` is ``forward(y, x)`` on the N >= 2 rows; the first and last rows are
    evaluated again alone and must give the same values (to float rounding). The usual cause
    is broadcasting: an ``x`` of shape (B,) where (B, 1) was meant turns ``y - x`` into a
    (B, B) table. Two extra evaluations of one row: cheap enough for every validation call.
    """
    n = y.shape[0]
    if n < 2:
        return
    for i in (0, n - 1):
        alone = forward(y[i : i + 1], None if x is None else x[i : i + 1])
        if not isinstance(alone, Tensor) or alone.shape != (1,):
            raise ValueError(
                f"{owner} returned shape {tuple(getattr(alone, 'shape', ()))} on one row but "
                f"({n},) on {n} rows: row b must depend on row b of y and x only (check the "
                "shapes: x of shape (B,) broadcasts where (B, 1) is meant)"
            )
        ref = batch_energy[i : i + 1].to(alone.dtype)
        scale = batch_energy.detach().abs().nan_to_num(0.0, 0.0, 0.0).amax().clamp_min(1.0)
        both_nan = torch.isnan(alone) & torch.isnan(ref)
        if not bool(both_nan.all()) and not torch.allclose(
            alone.detach(), ref.detach(), rtol=1e-3, atol=1e-5 * float(scale), equal_nan=True
        ):
            raise ValueError(
                f"{owner} mixes the batch: row {i} alone gives {float(alone[0]):.6g} but "
                f"{float(ref[0]):.6g} inside a batch of {n}; row b must depend on row b of y "
                "and x only (the usual slip is broadcasting: an x of shape (B,) where "
                "(B, 1) is meant, or a sum over the batch dimension)"
            )


class Energy(nn.Module):
    r"""Base class of an energy :math:`F(x, y)`: a scalar per row, low when ``y`` fits ``x``.

    Subclasses implement ``forward(y, x=None) -> (B,)``. Calling the module validates the
    inputs and the output (cheap checks, no device synchronisation); hot loops call
    :meth:`energy_and_grad`, which skips them. Analytic energies override
    :meth:`energy_and_grad` with a closed-form gradient that needs no autograd graph.

    Attributes:
        y_shape: the event shape of ``y`` when the energy knows it (``None`` otherwise).
        x_shape: the event shape of ``x`` when the energy knows it (``None`` otherwise);
            checked on every validated call.

    Example:
        >>> import torch, ebmlab as eb
        >>> class Parabola(eb.Energy):
        ...     def forward(self, y, x=None):
        ...         return (y**2).sum(-1)
        >>> Parabola()(torch.tensor([[1.0, 2.0]]))
        tensor([5.])
    """

    y_shape: tuple[int, ...] | None = None
    x_shape: tuple[int, ...] | None = None

    def __call__(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        check_tensor(y, "y")
        check_batch(y, x)
        self.check_y_shape(y)
        self.check_x_shape(x)
        out = super().__call__(y, x)
        return check_energy_output(out, y.shape[0], type(self).__name__)

    def check_y_shape(self, y: Tensor, name: str = "y") -> None:
        """Raise ``ValueError`` if ``y``'s event shape disagrees with :attr:`y_shape`."""
        if self.y_shape is not None and tuple(y.shape[1:]) != tuple(self.y_shape):
            raise ValueError(
                f"{name} has shape {tuple(y.shape)}; {type(self).__name__} expects "
                f"(B, *y_shape) = (B, {', '.join(map(str, self.y_shape))})"
            )

    def check_x_shape(self, x: Tensor | None, name: str = "x") -> None:
        """Raise ``ValueError`` if ``x``'s event shape disagrees with :attr:`x_shape`."""
        if x is not None and self.x_shape is not None and tuple(x.shape[1:]) != tuple(
            self.x_shape
        ):
            hint = ""
            if x.ndim == 1 and tuple(self.x_shape) == (1,):
                hint = f"; did you mean {name}.unsqueeze(-1)?"
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; {type(self).__name__} expects "
                f"(B, *x_shape) = (B, {', '.join(map(str, self.x_shape))}){hint}"
            )

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement forward(y, x=None)")

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Return :math:`F(x, y)` of shape ``(B,)`` and :math:`\nabla_y F` shaped like ``y``.

        Both are detached: no autograd graph is kept (use ``forward`` inside training).
        The default uses autograd; analytic energies override it with a closed form.
        """
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            e = self.forward(y, x)
            (g,) = torch.autograd.grad(e.sum(), y)
        return e.detach(), g


class LatentEnergy(nn.Module):
    r"""Base class of a latent-variable energy :math:`E(x, y, z)`.

    Subclasses implement ``forward(y, z, x=None) -> (B,)``. An energy whose minimiser over
    ``y`` for fixed ``z`` has a closed form may also implement ``decode(z, x=None)``, used by
    :func:`ebmlab.manifold`.

    Attributes:
        y_shape: event shape of ``y`` when known. z_shape: event shape of ``z`` when known.

    Example:
        >>> import torch, ebmlab as eb
        >>> class Circle(eb.LatentEnergy):
        ...     def forward(self, y, z, x=None):
        ...         return ((y - torch.cat([z.cos(), z.sin()], -1)) ** 2).sum(-1)
        >>> Circle()(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 1))
        tensor([0.])
    """

    y_shape: tuple[int, ...] | None = None
    z_shape: tuple[int, ...] | None = None

    def __call__(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        check_tensor(y, "y")
        check_tensor(z, "z")
        if z.shape[0] != y.shape[0]:
            raise ValueError(
                f"batch sizes differ: y has shape {tuple(y.shape)} but z has shape "
                f"{tuple(z.shape)}; expected equal first dimensions"
            )
        check_same_device(y, z, "y", "z")
        check_batch(y, x)
        for name, value, shape in (("y", y, self.y_shape), ("z", z, self.z_shape)):
            if shape is not None and tuple(value.shape[1:]) != tuple(shape):
                raise ValueError(
                    f"{name} has shape {tuple(value.shape)}; {type(self).__name__} expects "
                    f"(B, {', '.join(map(str, shape))})"
                )
        out = super().__call__(y, z, x)
        return check_energy_output(out, y.shape[0], type(self).__name__)

    def forward(
        self, y: Tensor, z: Tensor, x: Tensor | None = None
    ) -> Tensor:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement forward(y, z, x=None)")

    def energy_and_grad(
        self, y: Tensor, z: Tensor, x: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        r"""Return :math:`E`, :math:`\nabla_y E` and :math:`\nabla_z E`, all detached."""
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            z = z.detach().requires_grad_(True)
            e = self.forward(y, z, x)
            gy, gz = torch.autograd.grad(e.sum(), (y, z))
        return e.detach(), gy, gz

    def pairwise(self, y: Tensor, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Return the energy of every row of ``y`` (with its ``x``) against every ``z``: ``(B, C)``.

        ``y`` is ``(B, *y_shape)``, ``z`` is ``(C, *z_shape)`` and ``x`` is ``None`` or
        ``(B, *x_shape)``; used by :class:`ebmlab.FreeEnergy` and the plots. The default calls
        ``forward`` (unchecked) on the B × C expanded pairs; an energy with structure may
        override it to avoid materialising them.

        Example:
            >>> import torch, ebmlab as eb
            >>> class Shift(eb.LatentEnergy):
            ...     def forward(self, y, z, x=None):
            ...         return ((y - z) ** 2).sum(-1)
            >>> Shift().pairwise(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0], [3.0]]))
            tensor([[0., 4., 9.],
                    [1., 1., 4.]])
        """
        b, c = y.shape[0], z.shape[0]
        yy = y.unsqueeze(1).expand(b, c, *y.shape[1:]).reshape(b * c, *y.shape[1:])
        zz = z.unsqueeze(0).expand(b, c, *z.shape[1:]).reshape(b * c, *z.shape[1:])
        xx = None if x is None else x.unsqueeze(1).expand(b, c, *x.shape[1:]).flatten(0, 1)
        return self.forward(yy, zz, xx).reshape(b, c)


class FunctionEnergy(Energy):
    r"""Wrap any callable ``fn(y, x) -> (B,)`` as an :class:`Energy`.

    Args:
        fn: the energy; called as ``fn(y, x)`` with ``x`` possibly ``None``.
        grad_fn: optional closed-form gradient ``grad_fn(y, x)`` shaped like ``y``; when
            given, :meth:`energy_and_grad` uses it instead of autograd.
        y_shape: optional event shape of ``y``, used for validation and by ``eb.infer``.
        x_shape: optional event shape of ``x``, checked on every validated call and by
            ``eb.infer``.

    Example:
        >>> import torch, ebmlab as eb
        >>> f = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), x_shape=(1,))
        >>> f(torch.tensor([[2.0]]), x=torch.tensor([[4.0]]))
        tensor([0.])
        >>> f(torch.tensor([[2.0]]), x=torch.tensor([4.0]))
        Traceback (most recent call last):
        ...
        ValueError: x has shape (1,); FunctionEnergy expects ... did you mean x.unsqueeze(-1)?
    """

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor | None], Tensor],
        *,
        grad_fn: Callable[[Tensor, Tensor | None], Tensor] | None = None,
        y_shape: tuple[int, ...] | None = None,
        x_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        if grad_fn is not None and not callable(grad_fn):
            raise TypeError(f"grad_fn must be callable or None; got {type(grad_fn).__name__}")
        self.fn = fn
        self.grad_fn = grad_fn
        self.y_shape = None if y_shape is None else tuple(int(s) for s in y_shape)
        self.x_shape = None if x_shape is None else tuple(int(s) for s in x_shape)

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        return self.fn(y, x)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.grad_fn is None:
            return super().energy_and_grad(y, x)
        with torch.no_grad():
            return self.fn(y, x), self.grad_fn(y, x)
