r"""Importance sampling of :math:`\log Z` with a uniform or any ``torch.distributions`` proposal."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

from ebmlab._checks import check_positive_int
from ebmlab.domain import Box
from ebmlab.energy import Energy
from ebmlab.partition._common import (
    check_finite_energies,
    check_inputs,
    evaluate,
    reference,
    sample_distribution,
)
from ebmlab.partition.estimate import Estimate, estimate_from_sums
from ebmlab.samplers.metropolis import nan_to_neginf

__all__ = ["Importance"]


class Importance:
    r"""Estimate :math:`\log Z` by importance sampling: :math:`\hat Z = \frac1N\sum_i w_i`.

    With :math:`y_i \sim q`, :math:`w_i = e^{-\beta F(x, y_i)} / q(y_i)` (zero outside the
    domain when one is given), :math:`\hat Z` is unbiased for
    :math:`Z = \int e^{-\beta F}` and the reported standard error of :math:`\log \hat Z` is the
    delta method's :math:`s_w / (\sqrt N \hat Z)`. :math:`\log\hat Z` itself is biased low by
    about :math:`\mathrm{stderr}^2/2` (Jensen). The effective sample size
    :math:`(\sum w)^2/\sum w^2` says how many of the N draws effectively count; when it is a
    small fraction of N the proposal misses the mass and the stderr itself is unreliable.
    Draws are processed in chunks, so memory is bounded for any N.

    Args:
        num_samples: draws N per input.
        proposal: a ``torch.distributions.Distribution`` with event shape y's shape and
            batch shape ``()`` (shared by the inputs, drawn independently for each) or
            ``(B,)`` (one per input); by default uniform on the domain.
        chunk_size: energy evaluations per chunk (rows, counting the B inputs).

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(2))
        >>> est = eb.partition.Importance(num_samples=20_000).log_partition(
        ...     q, domain=eb.Box([-6, -6], [6, 6]), generator=torch.Generator().manual_seed(0))
        >>> abs(est.value.item() - q.log_partition()) < 3 * est.stderr.item()
        True
    """

    def __init__(
        self,
        num_samples: int = 10_000,
        *,
        proposal: Distribution | None = None,
        chunk_size: int = 65536,
    ) -> None:
        self.num_samples = check_positive_int(num_samples, "num_samples", minimum=2)
        if proposal is not None and not isinstance(proposal, Distribution):
            raise TypeError(
                "proposal must be a torch.distributions.Distribution or None; "
                f"got {type(proposal).__name__}"
            )
        self.proposal = proposal
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")

    def __repr__(self) -> str:
        return f"Importance(num_samples={self.num_samples}, proposal={self.proposal})"

    def log_partition(
        self,
        energy: Energy,
        x: Tensor | None = None,
        *,
        beta: float = 1.0,
        domain: Box | None = None,
        generator: torch.Generator | None = None,
    ) -> Estimate:
        r"""Return the estimate of :math:`\log Z` per input, its stderr and the ESS.

        Args:
            energy: the energy F.
            x: inputs (B, *x_shape) or ``None``.
            beta: inverse temperature > 0.
            domain: the box to integrate over (required with the default proposal);
                ``None`` integrates over all of :math:`\mathbb R^d`.
            generator: the source of randomness.

        Returns:
            An :class:`Estimate` of shape ``()`` without ``x`` and ``(B,)`` with it.

        Raises:
            ValueError: if there is neither a domain nor a proposal, if shapes disagree, or
                if the energy returns NaN or :math:`-\infty`.
        """
        beta = check_inputs(energy, x, beta, domain, generator, is_domain_required=False)
        return self._log_partition(energy, x, beta=beta, domain=domain, generator=generator)

    def _log_partition(
        self,
        energy: Energy,
        x: Tensor | None,
        *,
        beta: float,
        domain: Box | None,
        generator: torch.Generator | None,
    ) -> Estimate:
        """:meth:`log_partition` without the common argument checks (for ``eb.Gibbs``)."""
        self._check_proposal(energy, x, domain)
        b = 1 if x is None else x.shape[0]
        chunk = max(1, self.chunk_size // b)
        log_s1 = log_s2 = None
        bad = 0
        with torch.no_grad():
            for start in range(0, self.num_samples, chunk):
                n = min(chunk, self.num_samples - start)
                _, log_w, bad_chunk = self._draw(energy, x, n, beta, domain, generator)
                bad = bad + bad_chunk
                s1, s2 = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0)
                log_s1 = s1 if log_s1 is None else torch.logaddexp(log_s1, s1)
                log_s2 = s2 if log_s2 is None else torch.logaddexp(log_s2, s2)
        check_finite_energies(bad, "Importance")
        est = estimate_from_sums(log_s1, log_s2, self.num_samples)
        if x is None:
            est = Estimate(value=est.value[0], stderr=est.stderr[0], ess=est.ess[0])
        return est

    @torch.no_grad()
    def weighted_samples(
        self,
        energy: Energy,
        x: Tensor | None = None,
        *,
        beta: float = 1.0,
        domain: Box | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return all N draws (N, B, *y_shape) and their log weights (N, B), B = 1 without x.

        Resampling them in proportion to the weights gives approximate samples of the Gibbs
        distribution (sampling-importance-resampling).
        """
        beta = check_inputs(energy, x, beta, domain, generator, is_domain_required=False)
        return self._weighted_samples(energy, x, beta=beta, domain=domain, generator=generator)

    @torch.no_grad()
    def _weighted_samples(
        self,
        energy: Energy,
        x: Tensor | None,
        *,
        beta: float,
        domain: Box | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`weighted_samples` without the common argument checks (for ``eb.Gibbs``)."""
        self._check_proposal(energy, x, domain)
        y, log_w, bad = self._draw(energy, x, self.num_samples, beta, domain, generator)
        check_finite_energies(bad, "Importance")
        return y, log_w

    def _check_proposal(self, energy: Energy, x: Tensor | None, domain: Box | None) -> None:
        if self.proposal is None:
            if domain is None:
                raise ValueError(
                    "Importance needs a domain for its default uniform proposal, or a proposal; "
                    "got neither"
                )
            return
        event = tuple(self.proposal.event_shape)
        want = domain.shape if domain is not None else energy.y_shape
        if want is not None and event != tuple(want):
            raise ValueError(
                f"proposal has event_shape {event}; expected y's shape {tuple(want)} "
                "(wrap per-coordinate distributions in torch.distributions.Independent)"
            )
        batch = tuple(self.proposal.batch_shape)
        b = 1 if x is None else x.shape[0]
        if batch not in ((), (b,)):
            raise ValueError(
                f"proposal has batch_shape {batch}; expected () or (B,) = ({b},)"
            )

    def _draw(
        self,
        energy: Energy,
        x: Tensor | None,
        n: int,
        beta: float,
        domain: Box | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Draw n points per input; return y (n, B, *y_shape), log w (n, B), #bad energies."""
        b = 1 if x is None else x.shape[0]
        if self.proposal is None:
            assert domain is not None
            dtype, device = reference(energy, x, domain)
            y = domain.sample(n, b, generator=generator, dtype=dtype, device=device)
            log_q = torch.full((n, b), -math.log(domain.volume), dtype=dtype, device=device)
        else:
            shape = (n, b) if tuple(self.proposal.batch_shape) == () else (n,)
            y = sample_distribution(self.proposal, shape, generator)
            log_q = self.proposal.log_prob(y)
        e = evaluate(energy, y.transpose(0, 1), x).transpose(0, 1)  # (B, n) -> (n, B)
        bad = (torch.isnan(e) | torch.isneginf(e)).sum()
        log_w = nan_to_neginf(-beta * e) - log_q
        if domain is not None and self.proposal is not None:
            inside = domain.contains(y)
            log_w = torch.where(inside, log_w, torch.full_like(log_w, -math.inf))
        return y, log_w, bad
