r"""Latent variables: the sets z ranges over, the free energy that eliminates z, the manifold.

A latent-variable energy :math:`E(x, y, z)` becomes an ordinary energy of ``(x, y)`` once z is
eliminated, by minimisation (zero temperature) or by marginalisation (inverse temperature β):

.. math::
    F_\infty(x, y) = \min_z E(x, y, z), \qquad
    F_\beta(x, y) = -\frac1\beta \log \int e^{-\beta E(x, y, z)}\, dz .
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ebmlab._checks import (
    check_batch,
    check_beta,
    check_generator,
    check_positive,
    check_positive_int,
    check_tensor,
)
from ebmlab.domain import Box
from ebmlab.energy import Energy, LatentEnergy
from ebmlab.inference.infer import infer, minimize, resolve_solver
from ebmlab.inference.solver import Objective, Solver

__all__ = [
    "LatentSet",
    "Grid",
    "Discrete",
    "MonteCarlo",
    "Minimize",
    "FreeEnergy",
    "manifold",
]

Bound = float | Sequence[float] | Tensor
Sampler = Callable[[int, torch.Generator | None], Tensor] | torch.distributions.Distribution
REDUCTIONS = ("mean", "integral")
_T = TypeVar("_T")

# Default number of (y, z) pairs evaluated per chunk: the working set of one chunk is a few
# (B, chunk) matrices (tens of MB in float64), independent of |Z|, and chunks are few enough
# that per-operation overheads (thread-pool barriers on a busy machine) stay negligible.
PAIRS_PER_CHUNK = 1 << 20


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
        sizes = [num] * d if isinstance(num, int) else list(num)
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
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                z = self.sampler.sample((self.num,))
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


class Minimize:
    r"""Eliminate z by gradient-based minimisation over a continuous set (β = ∞ only).

    Each y is paired with ``num_starts`` starting latents (drawn once, here, so that the free
    energy is a deterministic function of y), all B × S problems are minimised as one batched
    program with :func:`ebmlab.inference.minimize`, and the lowest end point is kept. By the
    envelope theorem :math:`\nabla_y F_\infty = \partial_y E(x, y, \check z)`, so gradients
    need no differentiation through the inner solver.

    Args:
        z_shape: event shape of z.
        num_starts: starts per y.
        domain: an optional :class:`ebmlab.Box` for z: starts are uniform in it and iterates
            are projected onto it.
        init_scale: standard deviation of Gaussian starts without a domain.
        solver: ``"adam"``, ``"gd"``, ``"lbfgs"`` (default) or a solver instance.
        max_steps: most inner steps.
        gtol: inner convergence tolerance on the gradient norm.
        ftol: inner relative tolerance on energy changes.
        generator: random source of the starts.

    Example:
        >>> import torch, ebmlab as eb
        >>> latent = eb.latent.Minimize((1,), num_starts=4,
        ...                             generator=torch.Generator().manual_seed(0))
        >>> free = eb.FreeEnergy(eb.energies.Ellipse(), latent)
        >>> round(float(free(torch.tensor([[3.0, 0.0]])).detach()), 6)
        1.0
    """

    def __init__(
        self,
        z_shape: Sequence[int],
        *,
        num_starts: int = 8,
        domain: Box | None = None,
        init_scale: float = 1.0,
        solver: Solver | str | None = "lbfgs",
        max_steps: int = 200,
        gtol: float = 1e-8,
        ftol: float = 1e-12,
        generator: torch.Generator | None = None,
    ) -> None:
        self.z_shape = tuple(check_positive_int(int(s), "z_shape") for s in z_shape)
        self.num_starts = check_positive_int(num_starts, "num_starts")
        if domain is not None and not isinstance(domain, Box):
            raise TypeError(f"domain must be an ebmlab.Box or None; got {type(domain).__name__}")
        if domain is not None and domain.shape != self.z_shape:
            raise ValueError(f"domain has shape {domain.shape} but z_shape is {self.z_shape}")
        self.domain = domain
        self.solver = resolve_solver(solver)
        self.max_steps = check_positive_int(max_steps, "max_steps", minimum=0)
        self.gtol = check_positive(gtol, "gtol")
        self.ftol = check_positive(ftol, "ftol")
        check_generator(generator)
        check_positive(init_scale, "init_scale")
        if domain is not None:
            starts = domain.sample(self.num_starts, generator=generator, dtype=torch.float64)
        else:
            starts = init_scale * torch.randn(
                (self.num_starts, *self.z_shape), generator=generator, dtype=torch.float64
            )
        self.starts = starts

    def __repr__(self) -> str:
        return f"Minimize(z_shape={self.z_shape}, num_starts={self.num_starts})"

    @torch.no_grad()
    def solve(
        self, latent_energy: LatentEnergy, y: Tensor, x: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Return ``(z, energy)``: the best end point per y, ``(B, *z_shape)`` and ``(B,)``."""
        b, s = y.shape[0], self.num_starts
        z0 = self.starts.to(dtype=y.dtype, device=y.device)
        z0 = z0.unsqueeze(0).expand(b, *z0.shape).reshape(b * s, *self.z_shape)
        yr = y.repeat_interleave(s, dim=0)  # (B, ...) -> (B*S, ...)
        xr = None if x is None else x.repeat_interleave(s, dim=0)

        def energy_and_grad(z: Tensor, rows: Tensor | None) -> tuple[Tensor, Tensor]:
            assert rows is not None
            e, _, gz = latent_energy.energy_and_grad(
                yr[rows], z, None if xr is None else xr[rows]
            )
            return e, gz

        rows = torch.arange(b * s, device=y.device)
        project = self.domain.project if self.domain is not None else None
        # The driver rebinds ``objective.x`` to the still-active rows as problems converge.
        objective = Objective(energy_and_grad, rows, project)
        run = minimize(
            objective, z0, self.solver, max_steps=self.max_steps, gtol=self.gtol, ftol=self.ftol
        )
        e = run.energy.reshape(b, s)
        e = torch.where(torch.isfinite(e), e, torch.full_like(e, float("inf")))
        best = e.argmin(1)
        z = run.y.reshape(b, s, *self.z_shape)[torch.arange(b, device=y.device), best]
        return z, e.gather(1, best.unsqueeze(1)).squeeze(1)


Latent = LatentSet | Minimize


# Latent sets are recognised by their methods (a protocol), so user-defined sets work and a
# module imported twice (as doctest collection does) still recognises its own classes.
def _is_finite_set(latent: object) -> bool:
    return all(callable(getattr(latent, m, None)) for m in ("points", "log_weights"))


def _is_minimize(latent: object) -> bool:
    return callable(getattr(latent, "solve", None)) and hasattr(latent, "z_shape")


class FreeEnergy(Energy):
    r"""The free energy of a latent-variable energy: z eliminated by min or by log-sum-exp.

    .. math::
        F_\infty(x, y) = \min_z E(x, y, z), \qquad
        F_\beta(x, y) = -\frac1\beta \log \sum_k w_k\, e^{-\beta E(x, y, z_k)}

    with :math:`w_k = 1/|Z|` for ``reduction="mean"`` (the course's convention: β → 0 gives
    the mean energy over z, β → ∞ the minimum) and the quadrature weights of the latent set
    for ``"integral"`` (the integral :math:`\int e^{-\beta E} dz`; the two differ by the
    constant :math:`\frac1\beta \log |Z|` for a uniform set). The sum is streamed over z in
    chunks with a running maximum (a numerically stable log-sum-exp), so peak memory is
    O(B × chunk) whatever |Z| is. The gradient with respect to y, x and the parameters is the
    responsibility-weighted mean of those of E, :math:`\nabla F_\beta = \sum_k r_k \nabla
    E_k`, :math:`r = \mathrm{softmax}_k(\log w_k - \beta E_k)`: :meth:`energy_and_grad`
    accumulates it chunk by chunk with a running rescaling, and ``forward`` under autograd
    checkpoints each chunk (recomputed one at a time in the backward pass), so no (B, |Z|)
    graph is kept. At β = ∞ the gradient is that of E at the minimiser (envelope theorem).

    A latent energy may define ``pairwise(y, z, x=None) -> (B, C)``, the energy of every row
    of y (with its x) against every z, to avoid materialising the B × C pairs; otherwise
    ``forward`` is called on the expanded pairs.

    Args:
        latent_energy: the :class:`ebmlab.LatentEnergy` E.
        latent: a :class:`Grid`, :class:`Discrete`, :class:`MonteCarlo` or :class:`Minimize`
            (the last only at β = ∞).
        beta: inverse temperature, ``> 0``; ``math.inf`` (default) is the minimum over z.
        reduction: ``"mean"`` (default) or ``"integral"``.
        chunk_size: z values per chunk; default about 2²⁰ / B.

    Raises:
        ValueError: bad β or reduction, a latent set whose z shape disagrees with the energy's
            ``z_shape``, :class:`Minimize` with a finite β; at evaluation, non-finite energies
            over z (naming the offending y) or an energy that rejects the latent set's z.
        TypeError: wrong types of ``latent_energy`` or ``latent``.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 48, periodic=True)
        >>> free = eb.FreeEnergy(eb.energies.Ellipse(), grid)
        >>> free(torch.tensor([[2.0, 0.0], [0.0, 0.0]])).tolist()
        [0.0, 2.25]
        >>> soft = eb.FreeEnergy(eb.energies.Ellipse(), grid, beta=1.0)
        >>> bool(soft(torch.tensor([[2.0, 0.0]])) > 0.0)
        True
    """

    def __init__(
        self,
        latent_energy: LatentEnergy,
        latent: Latent,
        *,
        beta: float = math.inf,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(latent_energy, LatentEnergy):
            raise TypeError(
                f"latent_energy must be an ebmlab.LatentEnergy; got {type(latent_energy).__name__}"
            )
        if not (_is_finite_set(latent) or _is_minimize(latent)):
            raise TypeError(
                "latent must be eb.latent.Grid, Discrete, MonteCarlo or Minimize; got "
                f"{type(latent).__name__}"
            )
        self.beta = check_beta(beta, allow_inf=True)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        if _is_minimize(latent) and math.isfinite(self.beta):
            raise ValueError(
                f"Minimize eliminates z by minimisation, which is beta = inf; got beta = "
                f"{self.beta}. Use a Grid, Discrete or MonteCarlo latent set for finite beta"
            )
        z_shape = latent_energy.z_shape
        if z_shape is not None and tuple(latent.z_shape) != tuple(z_shape):
            raise ValueError(
                f"latent set {latent!r} has z_shape {tuple(latent.z_shape)} but "
                f"{type(latent_energy).__name__} expects z of shape (B, "
                f"{', '.join(map(str, z_shape))})"
            )
        if chunk_size is not None:
            check_positive_int(chunk_size, "chunk_size")
        self.latent_energy = latent_energy
        self.latent = latent
        self.reduction = reduction
        self.chunk_size = chunk_size
        self.y_shape = latent_energy.y_shape

    def extra_repr(self) -> str:
        return f"latent={self.latent!r}, beta={self.beta}, reduction={self.reduction!r}"

    # -- building blocks ---------------------------------------------------------------------

    def _chunks(self, like: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        z = self.latent.points(dtype=like.dtype, device=like.device)
        log_w = self.latent.log_weights(self.reduction, dtype=like.dtype, device=like.device)
        c = self.chunk_size or max(1, PAIRS_PER_CHUNK // max(1, like.shape[0]))
        for start in range(0, z.shape[0], c):
            yield z[start : start + c], log_w[start : start + c]

    def _pairwise(self, y: Tensor, z: Tensor, x: Tensor | None) -> Tensor:
        """Energies of every row of y (with its x) against every z: ``(B, C)``."""
        pairwise = getattr(self.latent_energy, "pairwise", None)
        if pairwise is not None:
            return pairwise(y, z, x)
        b, c = y.shape[0], z.shape[0]
        yy = y.unsqueeze(1).expand(b, c, *y.shape[1:]).reshape(b * c, *y.shape[1:])
        zz = z.unsqueeze(0).expand(b, c, *z.shape[1:]).reshape(b * c, *z.shape[1:])
        xx = None if x is None else x.unsqueeze(1).expand(b, c, *x.shape[1:]).flatten(0, 1)
        return self.latent_energy.forward(yy, zz, xx).reshape(b, c)

    @torch.no_grad()
    def _stream(self, y: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor]:
        """Return (F, is_bad) by a streamed log-sum-exp (or min); no graph.

        Each chunk's log-sum-exp is combined into a running one with ``logaddexp``, so a chunk
        costs the same passes over its (B, C) energies as the one-shot computation, plus one
        sum that flags non-finite energies (NaN or ±inf anywhere makes the row sum non-finite).
        """
        b = y.shape[0]
        is_bad = torch.zeros(b, dtype=torch.bool, device=y.device)
        if math.isinf(self.beta):
            best = torch.full((b,), float("inf"), dtype=y.dtype, device=y.device)
            for z, _ in self._chunks(y):
                e = self._pairwise(y, z, x)
                is_bad |= ~torch.isfinite(e.sum(1))
                best = torch.minimum(best, e.amin(1))
            return best, is_bad
        total = torch.full((b,), -float("inf"), dtype=y.dtype, device=y.device)
        for z, log_w in self._chunks(y):
            e = self._pairwise(y, z, x)
            is_bad |= ~torch.isfinite(e.sum(1))
            a = torch.add(log_w, e, alpha=-self.beta)  # log w − βE in one pass
            total = torch.logaddexp(total, torch.logsumexp(a, 1))
        return -total / self.beta, is_bad

    @torch.no_grad()
    def _argmin(self, y: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Return (ž, min energy, is_bad) over the finite set, streamed."""
        b = y.shape[0]
        best = torch.full((b,), float("inf"), dtype=y.dtype, device=y.device)
        index = torch.zeros(b, dtype=torch.long, device=y.device)
        is_bad = torch.zeros(b, dtype=torch.bool, device=y.device)
        offset = 0
        for z, _ in self._chunks(y):
            e = self._pairwise(y, z, x)
            is_bad |= ~torch.isfinite(e.sum(1))
            # amin/argmin rather than min(dim): the (values, indices) kernel is far slower.
            pos = e.argmin(1)
            value = e.gather(1, pos.unsqueeze(1)).squeeze(1)
            better = value < best
            best = torch.where(better, value, best)
            index = torch.where(better, pos + offset, index)
            offset += z.shape[0]
        points = self.latent.points(dtype=y.dtype, device=y.device)
        return points[index], best, is_bad

    def _stream_checked(self, y: Tensor, x: Tensor | None) -> Tensor:
        free, is_bad = self._guarded(lambda: self._stream(y, x))
        self._raise_bad(y, is_bad)
        return free

    def _check_input(self, y: Tensor, x: Tensor | None) -> None:
        check_tensor(y, "y")
        check_batch(y, x)
        self.check_y_shape(y)

    def _raise_bad(self, y: Tensor, is_bad: Tensor) -> None:
        if bool(is_bad.any()):
            rows = torch.nonzero(is_bad).flatten()
            i = int(rows[0])
            raise ValueError(
                f"{type(self.latent_energy).__name__} returned non-finite energies over z for "
                f"{rows.numel()} input(s), first y[{i}] = {y[i].detach().cpu().tolist()}; "
                "the free energy needs finite E(x, y, z) for every z of the latent set"
            )

    def _guarded(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as err:
            raise ValueError(
                f"{type(self.latent_energy).__name__} rejected z of shape "
                f"(C, {', '.join(map(str, self.latent.z_shape))}) from {self.latent!r}: {err}"
            ) from err

    # -- the Energy interface -----------------------------------------------------------------

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        if _is_minimize(self.latent):
            z, _ = self.latent.solve(self.latent_energy, y.detach(),
                                     None if x is None else x.detach())
            # Envelope theorem: the gradient at the inner minimum ignores dz/dy.
            out = self.latent_energy.forward(y, z, x)
            self._raise_bad(y, ~torch.isfinite(out))
            return out
        if math.isinf(self.beta):
            z, _, is_bad = self._guarded(
                lambda: self._argmin(y.detach(), None if x is None else x.detach())
            )
            self._raise_bad(y, is_bad)
            zz = z  # (B, *z_shape): one minimiser per row
            return self.latent_energy.forward(y, zz, x)
        if not torch.is_grad_enabled():
            return self._stream_checked(y, x)
        # With autograd on, each chunk is checkpointed: only its (B,) log-sum-exp is kept and
        # its energies are recomputed one chunk at a time in the backward pass, so training
        # memory stays O(B x chunk) and gradients reach every tensor E uses (parameters,
        # captured tensors, torch.func inputs), with higher-order gradients intact.
        chunks = list(self._chunks(y))
        if len(chunks) == 1:
            parts = [self._guarded(lambda: self._chunk_lse(y, x, *chunks[0]))]
        else:
            parts = [
                self._guarded(
                    lambda z=z, log_w=log_w: checkpoint(
                        self._chunk_lse, y, x, z, log_w, use_reentrant=False
                    )
                )
                for z, log_w in chunks
            ]
        lse = torch.logsumexp(torch.stack([p[0] for p in parts]), 0)
        self._raise_bad(y, torch.stack([p[1] for p in parts]).any(0))
        return -lse / self.beta

    def _chunk_lse(
        self, y: Tensor, x: Tensor | None, z: Tensor, log_w: Tensor
    ) -> tuple[Tensor, Tensor]:
        e = self._pairwise(y, z, x)
        return torch.logsumexp(log_w - self.beta * e, 1), ~torch.isfinite(e.detach()).all(1)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Return :math:`F_\beta` and :math:`\nabla_y F_\beta`, streamed and detached.

        Non-finite energies are not raised here (this is the inference hot loop): they make F
        non-finite, which the inference driver reports as a diverged start.
        """
        y = y.detach()
        x = _detach(x)
        if _is_minimize(self.latent):
            z, _ = self.latent.solve(self.latent_energy, y, x)
            e, gy, _ = self.latent_energy.energy_and_grad(y, z, x)
            return e, gy
        if math.isinf(self.beta):
            z, _, _ = self._argmin(y, x)
            e, gy, _ = self.latent_energy.energy_and_grad(y, z, x)
            return e, gy
        b = y.shape[0]
        m = torch.full((b,), -float("inf"), dtype=y.dtype, device=y.device)
        s = torch.zeros(b, dtype=y.dtype, device=y.device)
        grad = torch.zeros_like(y)
        expand = (b,) + (1,) * (y.ndim - 1)
        with torch.enable_grad():
            y_ = y.requires_grad_(True)
            for z, log_w in self._chunks(y):
                e = self._pairwise(y_, z, x)
                a = log_w - self.beta * e.detach()
                m_new = torch.maximum(m, a.amax(1))
                scale = torch.exp(m - m_new)
                p = torch.exp(a - m_new.unsqueeze(1))  # (B, C), unnormalised responsibilities
                (g,) = torch.autograd.grad(e, y_, grad_outputs=p)
                grad = grad * scale.reshape(expand) + g
                s = s * scale + p.sum(1)
                m = m_new
        free = -(m + s.log()) / self.beta
        return free, grad / s.reshape(expand)

    # -- z-side queries ---------------------------------------------------------------------

    def argmin_z(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        r"""Return :math:`\check z = \arg\min_z E(x, y, z)` for each row, ``(B, *z_shape)``.

        Exact over a finite latent set (the first minimiser on ties); by multi-start descent
        for :class:`Minimize`.
        """
        self._check_input(y, x)
        if _is_minimize(self.latent):
            return self.latent.solve(self.latent_energy, y.detach(), _detach(x))[0]
        z, _, is_bad = self._guarded(lambda: self._argmin(y.detach(), _detach(x)))
        self._raise_bad(y, is_bad)
        return z

    @torch.no_grad()
    def responsibilities(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        r"""Return the softargmin weights over z, ``(B, |Z|)``, rows summing to one.

        :math:`r_k = w_k e^{-\beta E(x, y, z_k)} / \sum_j w_j e^{-\beta E(x, y, z_j)}`; at
        β = ∞ the one-hot indicator of :meth:`argmin_z`. The columns follow
        ``latent.points()``.
        """
        self._check_input(y, x)
        if _is_minimize(self.latent):
            raise ValueError(
                "responsibilities need a finite latent set (Grid, Discrete or MonteCarlo); "
                "got Minimize"
            )
        parts, logs = [], []
        for z, log_w in self._chunks(y):
            parts.append(self._guarded(lambda z=z: self._pairwise(y, z, _detach(x))))
            logs.append(log_w)
        e = torch.cat(parts, 1)
        self._raise_bad(y, ~torch.isfinite(e).all(1))
        if math.isinf(self.beta):
            out = torch.zeros_like(e)
            return out.scatter_(1, e.argmin(1, keepdim=True), 1.0)
        return torch.softmax(torch.cat(logs).unsqueeze(0) - self.beta * e, dim=1)


def _detach(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.detach()


class _FixedLatent(Energy):
    """E(x, y, z) with (z, x) fixed per row, packed into the conditioning tensor."""

    def __init__(
        self,
        latent_energy: LatentEnergy,
        z_shape: tuple[int, ...],
        x_shape: tuple[int, ...] | None,
    ) -> None:
        super().__init__()
        self.latent_energy = latent_energy
        self.z_shape = z_shape
        self.x_shape = x_shape
        self.dz = math.prod(z_shape)
        self.y_shape = latent_energy.y_shape

    def _unpack(self, cond: Tensor) -> tuple[Tensor, Tensor | None]:
        z = cond[:, : self.dz].reshape(-1, *self.z_shape)
        x = None if self.x_shape is None else cond[:, self.dz :].reshape(-1, *self.x_shape)
        return z, x

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        assert x is not None
        z, xx = self._unpack(x)
        return self.latent_energy.forward(y, z, xx)

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        assert x is not None
        z, xx = self._unpack(x)
        e, gy, _ = self.latent_energy.energy_and_grad(y, z, xx)
        return e, gy


def manifold(
    latent_energy: LatentEnergy,
    latent: LatentSet,
    x: Tensor | None = None,
    *,
    y_shape: tuple[int, ...] | None = None,
    num_starts: int = 4,
    solver: Solver | str | None = None,
    max_steps: int = 500,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Return the manifold of predictions :math:`\check y(z) = \arg\min_y E(x, y, z)`.

    For every z of a finite latent set (and every input x), the y that minimises the energy:
    in closed form through ``latent_energy.decode(z, x)`` when the energy has a decoder, by
    :func:`ebmlab.infer` over y with z fixed otherwise (the best of ``num_starts`` starts).

    Args:
        latent_energy: the :class:`ebmlab.LatentEnergy`.
        latent: a :class:`Grid`, :class:`Discrete` or :class:`MonteCarlo` set of z.
        x: conditioning inputs ``(B, *x_shape)`` or ``None`` (then B = 1).
        y_shape: event shape of y when the energy does not give it (inference path only).
        num_starts: inference starts per (x, z) pair.
        solver: inference solver (default Adam).
        max_steps: most inference steps.
        generator: random source of the inference starts.

    Returns:
        ``(B, |Z|, *y_shape)``: row b, column k is the prediction for ``x[b]`` and the k-th
        point of ``latent.points()``.

    Example:
        >>> import math, torch, ebmlab as eb
        >>> grid = eb.latent.Grid(0.0, 2 * math.pi, 4, periodic=True)
        >>> (eb.manifold(eb.energies.Ellipse(), grid)[0].round(decimals=6) + 0.0).tolist()
        [[2.0, 0.0], [0.0, 1.5], [-2.0, 0.0], [0.0, -1.5]]
    """
    if not isinstance(latent_energy, LatentEnergy):
        raise TypeError(
            f"latent_energy must be an ebmlab.LatentEnergy; got {type(latent_energy).__name__}"
        )
    if not _is_finite_set(latent):
        raise TypeError(
            "latent must be a finite set (eb.latent.Grid, Discrete or MonteCarlo); got "
            f"{type(latent).__name__}"
        )
    if x is not None:
        check_tensor(x, "x")
        dtype, device = x.dtype, x.device
    else:
        ref = next(iter(latent_energy.parameters()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else torch.device("cpu")
    z = latent.points(dtype=dtype, device=device)
    n, b = z.shape[0], 1 if x is None else x.shape[0]
    zz = z.unsqueeze(0).expand(b, *z.shape).reshape(b * n, *z.shape[1:])
    xx = None if x is None else x.repeat_interleave(n, dim=0)  # (B, ..) -> (B*N, ..)
    decode = getattr(latent_energy, "decode", None)
    if decode is not None:
        with torch.no_grad():
            y = decode(zz, xx)
        return y.reshape(b, n, *y.shape[1:])
    shape = y_shape or latent_energy.y_shape
    if shape is None:
        raise ValueError("y_shape is needed: pass y_shape=... or give the energy a y_shape")
    shape = tuple(int(s) for s in shape)
    x_shape = None if x is None else tuple(x.shape[1:])
    cond = zz.reshape(b * n, -1)
    if xx is not None:
        cond = torch.cat([cond, xx.reshape(b * n, -1).to(dtype)], 1)
    fixed = _FixedLatent(latent_energy, tuple(z.shape[1:]), x_shape)
    res = infer(fixed, cond, y_shape=shape, num_starts=num_starts, solver=solver,
                max_steps=max_steps, generator=generator)
    return res.best.reshape(b, n, *shape)

