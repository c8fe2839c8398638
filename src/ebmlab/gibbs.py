r"""``Gibbs``: the Gibbs–Boltzmann distribution :math:`P(y|x) \propto e^{-\beta F(x, y)}`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from ebmlab._checks import check_beta, check_generator, check_positive_int, check_tensor
from ebmlab.discrete_domain import Categorical
from ebmlab.domain import Box, check_box
from ebmlab.energy import Energy
from ebmlab.partition import ESTIMATORS, Estimate, Grid, GridStatistics, SamplingEstimator
from ebmlab.partition.enumerate import for_discrete_domain

__all__ = ["Gibbs"]

# ESTIMATORS moved to ebmlab.partition; the name above keeps ebmlab.gibbs.ESTIMATORS working.


class Gibbs(Distribution):
    r"""The Gibbs–Boltzmann distribution of an energy on a box, as a torch ``Distribution``.

    .. math:: P(y|x) = \frac{e^{-\beta F(x, y)}}{Z_\beta(x)}, \qquad
              Z_\beta(x) = \int_{box} e^{-\beta F(x, y')}\,dy'.

    Low energy is high probability; :math:`\beta \to \infty` concentrates the mass on the
    minima, :math:`\beta \to 0` spreads it uniformly over the box. ``batch_shape`` is ``()``
    without ``x`` and ``(B,)`` with it; ``event_shape`` is the domain's shape.

    :math:`\log Z` comes from ``estimator`` (computed on first use, then cached, and treated
    as a constant: ``log_prob`` is differentiable in ``y`` and in the energy's parameters
    through :math:`-\beta F` only):

    - ``"grid"`` (default, dimension ≤ 3): midpoint quadrature, deterministic, exact sampling
      of the piecewise-constant density (a cell by its mass, then uniform inside it), and
      ``mean``, ``variance`` and ``entropy()`` by the same quadrature;
    - ``"importance"`` and ``"ais"``: Monte Carlo estimates with a standard error; ``sample``
      then resamples weighted draws (sampling-importance-resampling: approximate, good when
      the estimator's ESS is large).
    - on a discrete domain (``eb.Binary(d)``, ``eb.Categorical(d, n)``): exact enumeration
      (:class:`ebmlab.partition.Enumerate`, the default there; stderr 0, exact sampling,
      moments and Shannon entropy), refused past ``2^24`` points.

    Pass an estimator object (``eb.partition.Grid(num=512)``, ``Importance(...)``,
    ``AIS(...)``, or any :class:`ebmlab.partition.SamplingEstimator`) to choose its settings.
    The arguments are validated once, here; the estimator is then called without re-checking.

    Args:
        energy: the energy F.
        x: inputs (B, *x_shape) or ``None``.
        beta: inverse temperature, a finite number > 0.
        domain: the box the distribution lives on.
        estimator: ``"grid"``, ``"importance"``, ``"ais"`` or an estimator object.
        validate_args: torch's switch for argument and support checks (``log_prob`` of a
            point outside the box raises when on, returns :math:`-\infty` when off).

    Raises:
        TypeError: if ``energy`` is not an ``ebmlab.Energy``, ``domain`` not a ``Box``, or
            ``x`` not a floating tensor.
        ValueError: if beta is not finite and > 0, the domain's shape disagrees with the
            energy's ``y_shape``, the estimator is unknown, or a grid is asked for in more
            than 3 dimensions.

    Example:
        >>> import torch, ebmlab as eb
        >>> p = eb.Gibbs(eb.energies.DoubleWell(1), beta=4.0, domain=eb.Box(-2.0, 2.0))
        >>> round(p.log_partition().value.item(), 4)
        -0.0536
        >>> p.sample((3,), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1])
        >>> abs(p.mean.item()) < 1e-6, round(p.log_prob(torch.tensor([[1.0]])).item(), 4)
        (True, 0.0536)
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        energy: Energy,
        x: Tensor | None = None,
        *,
        beta: float = 1.0,
        domain: Box,
        estimator: str | Grid | SamplingEstimator = "grid",
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
        if x is not None:
            check_tensor(x, "x")
            if x.shape[0] == 0:
                raise ValueError(f"x is an empty batch (shape {tuple(x.shape)}); pass at least "
                                 "one input, or x=None for an unconditional energy")
        self.beta = check_beta(beta)
        if isinstance(domain, Categorical):  # discrete y: exact sums (eb.partition.Enumerate)
            estimator = for_discrete_domain(estimator)
        else:
            check_box(domain, allow_none=False)
        if energy.y_shape is not None and tuple(energy.y_shape) != domain.shape:
            raise ValueError(
                f"domain has shape {domain.shape} but {type(energy).__name__} expects "
                f"y_shape {tuple(energy.y_shape)}"
            )
        if isinstance(estimator, str):
            if estimator not in ESTIMATORS:
                raise ValueError(
                    f"estimator must be one of {sorted(ESTIMATORS)} or an estimator object; "
                    f"got {estimator!r}"
                )
            estimator = ESTIMATORS[estimator]()
        elif not isinstance(estimator, (Grid, SamplingEstimator)):
            raise TypeError(
                "estimator must be 'grid', 'importance', 'ais' or an ebmlab.partition "
                f"estimator; got {type(estimator).__name__}"
            )
        if isinstance(estimator, Grid):
            estimator.sizes(domain)  # raises for dimension > 3
        self.energy = energy
        self.x = x
        self.domain = domain
        self.estimator = estimator
        self._log_partition: Estimate | None = None
        self._statistics: GridStatistics | None = None
        batch_shape = torch.Size(() if x is None else (x.shape[0],))
        super().__init__(batch_shape, torch.Size(domain.shape), validate_args=validate_args)

    def __repr__(self) -> str:
        return (
            f"Gibbs({type(self.energy).__name__}, beta={self.beta}, domain={self.domain}, "
            f"estimator={self.estimator!r}, batch_shape={tuple(self.batch_shape)})"
        )

    @property
    def is_grid(self) -> bool:
        """Whether :math:`\\log Z` and the moments come from grid quadrature."""
        return isinstance(self.estimator, Grid)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        """The box, as a torch constraint."""
        if isinstance(self.domain, Categorical):  # whole numbers 0..n-1 at every site
            values = constraints.integer_interval(0, self.domain.num_classes - 1)
            return constraints.independent(values, len(self.domain.shape))
        return constraints.independent(
            constraints.interval(self.domain.low, self.domain.high), len(self.domain.shape)
        )

    def log_partition(self, generator: torch.Generator | None = None) -> Estimate:
        r"""Return (and cache) the estimate of :math:`\log Z_\beta(x)`, shape ``batch_shape``.

        Args:
            generator: randomness for a Monte Carlo estimator on the first call (the cached
                value is returned afterwards).
        """
        check_generator(generator)
        if self._log_partition is None:
            if self.is_grid:
                stats = self._grid_statistics()
                error = self.estimator.discretisation_error(
                    stats.log_partition, self.energy, self.x, beta=self.beta,
                    domain=self.domain,
                )  # Richardson: |L_h - L_2h| / 3, see eb.partition.Grid
                value = self._unbatch(stats.log_partition)
                self._log_partition = Estimate(value=value, stderr=self._unbatch(error))
            else:
                self._log_partition = self._ungated("log_partition")(
                    self.energy, self.x, beta=self.beta, domain=self.domain, generator=generator
                )
        return self._log_partition

    def log_prob(self, value: Tensor) -> Tensor:
        r"""Return :math:`-\beta F(x, y) - \log Z` for ``value`` (*sample_shape, *batch, *event).

        The batch part of ``value``'s shape broadcasts against ``batch_shape``.
        """
        check_tensor(value, "value", min_ndim=0)
        if self._validate_args:
            self._validate_sample(value)
        event_nd = len(self.event_shape)
        lead = value.shape[: value.ndim - event_nd]
        if tuple(value.shape[value.ndim - event_nd :]) != tuple(self.event_shape):
            raise ValueError(
                f"value has shape {tuple(value.shape)}; expected (*sample_shape, "
                f"*batch_shape, *event_shape) with event_shape {tuple(self.event_shape)}"
            )
        lead = torch.broadcast_shapes(lead, self.batch_shape)
        y = value.expand(*lead, *self.event_shape)
        b = 1 if self.x is None else self.x.shape[0]
        rows = y.reshape(-1, *self.event_shape)  # (*lead, *event) -> (N*B, *event)
        x_rows = None
        if self.x is not None:
            n = rows.shape[0] // b
            x_rows = self.x.expand(n, *self.x.shape).reshape(n * b, *self.x.shape[1:])
        e = self.energy(rows, x_rows).reshape(lead)
        log_p = -self.beta * e - self.log_partition().value.to(e.dtype)
        inside = self.domain.contains(y)
        return torch.where(inside, log_p, torch.full_like(log_p, -math.inf))

    @torch.no_grad()
    def sample(
        self, sample_shape: torch.Size | tuple[int, ...] = (),
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw samples of shape ``(*sample_shape, *batch_shape, *event_shape)``.

        Exact for the grid's piecewise-constant density; otherwise sampling-importance-
        resampling from a fresh set of the estimator's weighted draws.
        """
        check_generator(generator)
        for size in sample_shape:
            check_positive_int(size, "sample_shape")
        shape = torch.Size(sample_shape)
        n = math.prod(shape)
        if self.is_grid:
            stats = self._grid_statistics()
            y = self.estimator.sample(
                stats, self.energy, self.x, n, beta=self.beta, domain=self.domain,
                generator=generator,
            )  # (N, B, *event)
        else:
            draws, log_w = self._ungated("weighted_samples")(
                self.energy, self.x, beta=self.beta, domain=self.domain, generator=generator
            )  # (M, B, *event), (M, B)
            probs = torch.softmax(log_w.T, 1)  # (B, M)
            idx = torch.multinomial(probs, n, replacement=True, generator=generator)  # (B, N)
            columns = torch.arange(idx.shape[0], device=idx.device)
            y = draws[idx.T, columns]  # (N, B, *event)
        return y.reshape(*shape, *self.batch_shape, *self.event_shape)

    @property
    def mean(self) -> Tensor:
        """:math:`E[y]` by grid quadrature, shape ``batch_shape + event_shape``."""
        return self._moment("mean")

    @property
    def variance(self) -> Tensor:
        """Per-coordinate :math:`\\mathrm{Var}[y]` by grid quadrature."""
        return self._moment("variance")

    def entropy(self) -> Tensor:
        r"""Differential entropy :math:`H = \log Z + \beta E[F]` by grid quadrature (nats)."""
        stats = self._require_grid("entropy()")
        return self._unbatch(stats.log_partition + self.beta * stats.mean_energy)

    def _moment(self, name: str) -> Tensor:
        stats = self._require_grid(name)
        value = getattr(stats, name)  # (B, D)
        return value.reshape(*self.batch_shape, *self.event_shape)

    def _require_grid(self, what: str) -> GridStatistics:
        if not self.is_grid:
            raise NotImplementedError(
                f"Gibbs.{what} is computed by grid quadrature; this distribution uses "
                f"{type(self.estimator).__name__}. Use estimator='grid' (dimension <= 3) or "
                "average over sample()"
            )
        return self._grid_statistics()

    def _grid_statistics(self) -> GridStatistics:
        if self._statistics is None:
            self._statistics = self.estimator.statistics(
                self.energy, self.x, beta=self.beta, domain=self.domain
            )
        return self._statistics

    def _ungated(self, method: str) -> Any:
        # The arguments were validated once, in __init__: call the estimator's computation
        # without its argument gate (the package's estimators have one; another estimator
        # following the protocol is called through its public method).
        return getattr(self.estimator, "_" + method, None) or getattr(self.estimator, method)

    def _unbatch(self, value: Tensor) -> Tensor:
        return value if self.x is not None else value[0]
