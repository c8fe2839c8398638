r"""``Enumerate``: exact :math:`\log Z = \log\sum_y e^{-\beta F(x, y)}` over a discrete domain."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ebmlab._checks import check_beta, check_generator, check_tensor
from ebmlab._checks import reference as _reference
from ebmlab.discrete_domain import Categorical, codes
from ebmlab.energy import Energy
from ebmlab.partition._common import check_finite_energies, evaluate
from ebmlab.partition.estimate import Estimate
from ebmlab.partition.grid import Grid, GridStatistics
from ebmlab.samplers.metropolis import nan_to_neginf

__all__ = ["Enumerate", "for_discrete_domain"]


class Enumerate(Grid):
    r"""Sum :math:`e^{-\beta F(x, y)}` over every point of an ``eb.Binary``/``eb.Categorical``.

    The discrete counterpart of :class:`Grid`, and what ``eb.Gibbs`` uses on a discrete domain:
    the points are enumerated in index order (``chunk_size`` energy evaluations at a time,
    counting the B inputs), with a streaming log-sum-exp, so memory stays bounded. Everything
    is exact (up to floating-point rounding): ``log_partition`` has ``stderr`` 0, the same
    single pass gives :math:`E[y]`, :math:`\mathrm{Var}[y_d]` and :math:`E[F]` (so the
    Shannon entropy :math:`\log Z + \beta E[F]`), and :meth:`sample` draws exactly (a chunk by
    its mass, then a point within it, re-evaluating only the chunks drawn). Domains of more
    than :data:`ebmlab.discrete_domain.MAX_ENUMERATION` (:math:`2^{24}`) points are refused.

    It subclasses :class:`Grid` for ``eb.Gibbs``, which treats both as deterministic passes
    with exact sampling; it has no cells (the counting measure: no cell volume, no jitter).

    Args:
        chunk_size: energy evaluations per chunk (rows, counting the B inputs).

    Raises:
        TypeError: for a domain that is not discrete.
        ValueError: for a domain past the enumeration limit.

    Example:
        >>> import torch, ebmlab as eb
        >>> ising = eb.FunctionEnergy(lambda y, x: -(y[:, 1:] == y[:, :-1]).sum(-1).to(y.dtype),
        ...                           y_shape=(3,))
        >>> est = eb.partition.Enumerate().log_partition(ising, domain=eb.Binary(3))
        >>> round(est.value.item(), 6), est.stderr.item()   # 2 e^2 + 4 e + 2 e^0
        (3.319671, 0.0)
    """

    def __init__(self, *, chunk_size: int = 65536) -> None:
        super().__init__(None, chunk_size=chunk_size)

    def __repr__(self) -> str:
        return f"Enumerate(chunk_size={self.chunk_size})"

    def sizes(self, domain: object) -> tuple[int, ...]:
        """Return ``(number of points,)`` of ``domain``, refusing one past the limit."""
        if not isinstance(domain, Categorical):
            raise TypeError(
                "Enumerate sums over a discrete domain (eb.Binary or eb.Categorical); got "
                f"{type(domain).__name__}. Use Grid, Importance or AIS on a Box"
            )
        return (domain.check_size(),)

    def log_partition(
        self,
        energy: Energy,
        x: Tensor | None = None,
        *,
        beta: float = 1.0,
        domain: Categorical,
        generator: torch.Generator | None = None,
    ) -> Estimate:
        r"""Return the exact :math:`\log Z` per input (shape ``()`` without ``x``, ``(B,)``).

        Args:
            energy: the energy F.
            x: inputs (B, *x_shape) or ``None``.
            beta: inverse temperature > 0.
            domain: the discrete domain to sum over.
            generator: unused (the sum is deterministic); accepted for uniformity.

        Returns:
            ``Estimate(value, stderr=0, ess=None)``.

        Raises:
            TypeError: for an energy that is not an ``ebmlab.Energy`` or a non-discrete domain.
            ValueError: for a bad beta, a shape mismatch, a domain past the enumeration limit,
                or energies that are NaN or -inf.
        """
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an ebmlab.Energy; got {type(energy).__name__}")
        if x is not None:
            check_tensor(x, "x")
        self.sizes(domain)
        if energy.y_shape is not None and tuple(energy.y_shape) != domain.shape:
            raise ValueError(
                f"domain has shape {domain.shape} but {type(energy).__name__} expects "
                f"y_shape {tuple(energy.y_shape)}"
            )
        check_generator(generator)
        return self._log_partition(energy, x, beta=check_beta(beta), domain=domain)

    def _log_partition(
        self,
        energy: Energy,
        x: Tensor | None,
        *,
        beta: float,
        domain: Categorical,
        generator: torch.Generator | None = None,
    ) -> Estimate:
        """:meth:`log_partition` without the argument checks."""
        log_z = self._log_mass(energy, x, beta=beta, domain=domain)
        if x is None:
            log_z = log_z[0]
        return Estimate(value=log_z, stderr=torch.zeros_like(log_z))

    def discretisation_error(
        self, log_z: Tensor, energy: Energy, x: Tensor | None, *, beta: float, domain: object
    ) -> Tensor:
        """Return zeros: the sum is exact (``eb.Gibbs`` reports this as the ``stderr``)."""
        return torch.zeros_like(log_z)

    @torch.no_grad()
    def _log_mass(
        self, energy: Energy, x: Tensor | None, *, beta: float, domain: Categorical
    ) -> Tensor:
        """Return (B,) log Z alone: the streaming log-sum-exp."""
        log_mass, bad = None, None
        for _, e in self._chunks(energy, x, domain):
            count = (torch.isnan(e) | torch.isneginf(e)).sum()
            lc = torch.logsumexp(nan_to_neginf(-beta * e), 1)
            log_mass = lc if log_mass is None else torch.logaddexp(log_mass, lc)
            bad = count if bad is None else bad + count
        check_finite_energies(bad, "Enumerate")
        _check_normalisable(log_mass)
        return log_mass

    @torch.no_grad()
    def statistics(
        self, energy: Energy, x: Tensor | None = None, *, beta: float = 1.0,
        domain: Categorical,
    ) -> GridStatistics:
        """Return the sums of one pass as :class:`GridStatistics` (inputs assumed validated).

        ``log_partition`` is exact (no cell volume), ``mean``/``variance`` are the moments of
        y (flattened to (B, D)), ``mean_energy`` :math:`E[F]`, ``chunk_log_mass`` the log mass
        of each chunk (for :meth:`sample`), ``sizes`` ``(number of points,)``.
        """
        log_mass = mean = var = mean_energy = bad = None
        chunk_masses = []
        for points, e in self._chunks(energy, x, domain):
            flat = points.reshape(points.shape[0], -1)  # (C, D)
            count = (torch.isnan(e) | torch.isneginf(e)).sum()
            logits = nan_to_neginf(-beta * e)
            lc = torch.logsumexp(logits, 1)  # (B,)
            chunk_masses.append(lc)
            w = torch.exp(logits - lc.unsqueeze(1))
            w = torch.where(torch.isneginf(lc).unsqueeze(1), torch.zeros_like(w), w)
            mean_c = w @ flat  # (B, D)
            var_c = (w.unsqueeze(-1) * (flat - mean_c.unsqueeze(1)) ** 2).sum(1)
            energy_c = (w * torch.where(w > 0, e, torch.zeros_like(e))).sum(1)
            if log_mass is None:
                log_mass, mean, var, mean_energy, bad = lc, mean_c, var_c, energy_c, count
                continue
            # Chan et al.'s pairwise merge of (mass, mean, variance), f the new chunk's share.
            merged = torch.logaddexp(log_mass, lc)
            f = torch.exp(lc - merged)
            f = torch.where(torch.isneginf(merged), torch.zeros_like(f), f)
            delta = mean_c - mean
            fc = f.unsqueeze(1)
            mean = mean + fc * delta
            var = (1 - fc) * var + fc * var_c + fc * (1 - fc) * delta**2
            mean_energy = mean_energy + f * (energy_c - mean_energy)
            log_mass, bad = merged, bad + count
        check_finite_energies(bad, "Enumerate")
        _check_normalisable(log_mass)
        return GridStatistics(
            log_partition=log_mass,
            mean=mean,
            variance=var,
            mean_energy=mean_energy,
            chunk_log_mass=torch.stack(chunk_masses, 1),
            sizes=(domain.size,),
            chunk=self._chunk(x),
        )

    @torch.no_grad()
    def sample(
        self,
        statistics: GridStatistics,
        energy: Energy,
        x: Tensor | None,
        num_samples: int,
        *,
        beta: float,
        domain: Categorical,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw exactly from :math:`P(y|x)`; returns (N, B, *domain.shape).

        A chunk is drawn with probability proportional to its mass, then a point within it
        (only the chunks drawn are evaluated again).
        """
        chunk, total = statistics.chunk, statistics.sizes[0]
        dtype, device = self._reference(energy, x)
        chunk_probs = torch.softmax(statistics.chunk_log_mass, 1)
        chunk_ids = torch.multinomial(
            chunk_probs, num_samples, replacement=True, generator=generator
        )  # (B, N)
        index = torch.zeros_like(chunk_ids)
        needed = torch.bincount(chunk_ids.reshape(-1), minlength=chunk_probs.shape[1])
        for k in needed.nonzero().reshape(-1).tolist():
            start = k * chunk
            points = self._points(domain, start, min(start + chunk, total), dtype, device)
            e = evaluate(energy, _batched(points, chunk_probs.shape[0]), x)
            probs = torch.softmax(nan_to_neginf(-beta * e), 1)
            probs = torch.nan_to_num(probs, nan=1.0)  # rows never assigned to this chunk
            point = torch.multinomial(probs, num_samples, replacement=True, generator=generator)
            index = torch.where(chunk_ids == k, start + point, index)
        y = _index_codes(index, domain, dtype)  # (B, N, D)
        return y.transpose(0, 1).reshape(num_samples, index.shape[0], *domain.shape)

    # --- the enumeration ------------------------------------------------------------------

    def _chunk(self, x: Tensor | None) -> int:
        return max(1, self.chunk_size // (1 if x is None else x.shape[0]))

    @staticmethod
    def _reference(energy: Energy, x: Tensor | None) -> tuple[torch.dtype, torch.device]:
        return _reference(x, energy)

    @staticmethod
    def _points(
        domain: Categorical, start: int, stop: int, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        c = codes(start, stop, domain.num_sites, domain.num_classes, dtype=dtype, device=device)
        return c.reshape(stop - start, *domain.shape)

    def _chunks(
        self, energy: Energy, x: Tensor | None, domain: Categorical
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(points (C, *shape), energies (B, C))`` chunk by chunk over the whole domain."""
        (total,) = self.sizes(domain)
        dtype, device = self._reference(energy, x)
        chunk, b = self._chunk(x), 1 if x is None else x.shape[0]
        for start in range(0, total, chunk):
            points = self._points(domain, start, min(start + chunk, total), dtype, device)
            yield points, evaluate(energy, _batched(points, b), x)


def for_discrete_domain(estimator: object) -> Enumerate:
    """Return the estimator ``eb.Gibbs`` uses on a discrete domain (``"grid"`` → ``Enumerate``).

    Raises:
        ValueError: for another estimator (only exact enumeration works on a discrete domain).
    """
    if isinstance(estimator, Enumerate):
        return estimator
    if isinstance(estimator, str) and estimator in ("grid", "enumerate"):
        return Enumerate()
    raise ValueError(
        "a discrete domain (eb.Binary, eb.Categorical) is summed exactly: estimator must be "
        f"'enumerate' (or the default) or an eb.partition.Enumerate; got {estimator!r}. Past "
        "the enumeration limit, sample with eb.samplers.Gibbs or GibbsWithGradients"
    )


def _batched(points: Tensor, b: int) -> Tensor:
    """(C, *shape) -> (B, C, *shape), a broadcast view shared by the B inputs."""
    return points.unsqueeze(0).expand(b, *points.shape)


def _index_codes(index: Tensor, domain: Categorical, dtype: torch.dtype) -> Tensor:
    """Return the points of flat indices ``index`` (B, N) as (B, N, D), site 0 fastest."""
    n = domain.num_classes
    powers = n ** torch.arange(domain.num_sites, device=index.device)
    return (index.unsqueeze(-1).div(powers, rounding_mode="floor") % n).to(dtype)


def _check_normalisable(log_mass: Tensor) -> None:
    if bool(torch.isneginf(log_mass).any()):
        raise ValueError(
            "Enumerate: the energy is +inf at every point for some input; the distribution "
            "is not normalisable on this domain"
        )

