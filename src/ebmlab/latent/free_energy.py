r"""``FreeEnergy``: z eliminated by a streamed minimum or log-sum-exp over a latent set."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ebmlab._checks import check_batch, check_beta, check_positive_int, check_tensor
from ebmlab.energy import Energy, LatentEnergy
from ebmlab.latent.minimize import Minimize
from ebmlab.latent.sets import REDUCTIONS, LatentSet

__all__ = ["FreeEnergy", "PAIRS_PER_CHUNK"]

_T = TypeVar("_T")
Latent = LatentSet | Minimize

# Default number of (y, z) pairs evaluated per chunk: the working set of one chunk is a few
# (B, chunk) matrices (tens of MB in float64), independent of |Z|, and chunks are few enough
# that per-operation overheads (thread-pool barriers on a busy machine) stay negligible.
PAIRS_PER_CHUNK = 1 << 20


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

    Energies over z are taken with :meth:`ebmlab.LatentEnergy.pairwise`, the energy of every
    row of y (with its x) against every z; an energy may override it to avoid materialising
    the B × C pairs (the default calls ``forward`` on the expanded pairs).

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
        if not isinstance(latent, (LatentSet, Minimize)):
            raise TypeError(
                "latent must be eb.latent.Grid, Discrete, MonteCarlo or Minimize; got "
                f"{type(latent).__name__}"
            )
        self.beta = check_beta(beta, allow_inf=True)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        if isinstance(latent, Minimize) and math.isfinite(self.beta):
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

    @torch.no_grad()
    def _stream(self, y: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor]:
        """Return (F, is_bad) by a streamed log-sum-exp (or min); no graph.

        Each chunk's sums relative to its minimum energy (see :func:`_parts`) are merged into
        running ones, plus one sum that flags non-finite energies (NaN or ±inf anywhere makes
        the row sum non-finite).
        """
        b = y.shape[0]
        is_bad = torch.zeros(b, dtype=torch.bool, device=y.device)
        if math.isinf(self.beta):
            best = torch.full((b,), float("inf"), dtype=y.dtype, device=y.device)
            for z, _ in self._chunks(y):
                e = self.latent_energy.pairwise(y, z, x)
                is_bad |= ~torch.isfinite(e.sum(1))
                best = torch.minimum(best, e.amin(1))
            return best, is_bad
        acc = None
        log_total = self._log_total(y)
        for z, log_w in self._chunks(y):
            e = self.latent_energy.pairwise(y, z, x)
            is_bad |= ~torch.isfinite(e.sum(1))
            part = _parts(e, _weights(log_w, log_total), self.beta, inplace=True)
            acc = part if acc is None else _merge(acc, part, self.beta)
        return _finish(acc, log_total, self.beta), is_bad

    @torch.no_grad()
    def _argmin(self, y: Tensor, x: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Return (ž, min energy, is_bad) over the finite set, streamed."""
        b = y.shape[0]
        best = torch.full((b,), float("inf"), dtype=y.dtype, device=y.device)
        index = torch.zeros(b, dtype=torch.long, device=y.device)
        is_bad = torch.zeros(b, dtype=torch.bool, device=y.device)
        offset = 0
        for z, _ in self._chunks(y):
            e = self.latent_energy.pairwise(y, z, x)
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
        if isinstance(self.latent, Minimize):
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
            return self.latent_energy.forward(y, z, x)  # one minimiser z per row
        if not torch.is_grad_enabled():
            return self._stream_checked(y, x)
        # With autograd on, each chunk is checkpointed: only its (B,) log-sum-exp is kept and
        # its energies are recomputed one chunk at a time in the backward pass, so training
        # memory stays O(B x chunk) and gradients reach every tensor E uses (parameters,
        # captured tensors, torch.func inputs), with higher-order gradients intact.
        log_total = self._log_total(y)
        chunks = [(z, _weights(log_w, log_total)) for z, log_w in self._chunks(y)]
        if len(chunks) == 1:
            parts = [self._guarded(lambda: self._chunk_parts(y, x, *chunks[0]))]
        else:
            parts = [
                self._guarded(
                    lambda z=z, w=w: checkpoint(self._chunk_parts, y, x, z, w, use_reentrant=False)
                )
                for z, w in chunks
            ]
        self._raise_bad(y, torch.stack([p[3] for p in parts]).any(0))
        acc = parts[0][:3]
        for part in parts[1:]:
            acc = _merge(acc, part[:3], self.beta)
        return _finish(acc, log_total, self.beta)

    def _chunk_parts(
        self, y: Tensor, x: Tensor | None, z: Tensor, w: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        e = self.latent_energy.pairwise(y, z, x)
        return (*_parts(e, w, self.beta), ~torch.isfinite(e.detach()).all(1))

    def _log_total(self, like: Tensor) -> float:
        """log of the total weight: 0 for ``"mean"`` (weights 1/|Z| by definition)."""
        if self.reduction == "mean":
            return 0.0
        log_w = self.latent.log_weights(self.reduction, dtype=torch.float64, device="cpu")
        return float(torch.logsumexp(log_w, 0))

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Return :math:`F_\beta` and :math:`\nabla_y F_\beta`, streamed and detached.

        Non-finite energies are not raised here (this is the inference hot loop): they make F
        non-finite, which the inference driver reports as a diverged start.
        """
        y = y.detach()
        x = _detach(x)
        if isinstance(self.latent, Minimize):
            z, _ = self.latent.solve(self.latent_energy, y, x)
            e, gy, _ = self.latent_energy.energy_and_grad(y, z, x)
            return e, gy
        if math.isinf(self.beta):
            z, _, _ = self._argmin(y, x)
            e, gy, _ = self.latent_energy.energy_and_grad(y, z, x)
            return e, gy
        b = y.shape[0]
        beta = self.beta
        log_total = self._log_total(y)
        m = torch.full((b,), float("inf"), dtype=y.dtype, device=y.device)  # running min of E
        t = torch.zeros(b, dtype=y.dtype, device=y.device)  # sum of w e^{β(m - E)}
        s = torch.zeros(b, dtype=y.dtype, device=y.device)  # sum of w expm1(β(m - E))
        mass = 0.0  # the weight seen so far
        grad = torch.zeros_like(y)
        expand = (b,) + (1,) * (y.ndim - 1)
        with torch.enable_grad():
            y_ = y.requires_grad_(True)
            for z, log_w in self._chunks(y):
                w = _weights(log_w, log_total)
                e = self.latent_energy.pairwise(y_, z, x)
                ed = e.detach()
                w = w.to(ed.dtype)
                m_new = torch.minimum(m, ed.amin(1))
                d = (m_new - m) * beta  # <= 0: rescales what was summed against the old min
                scale = torch.exp(d)
                u = (m_new.unsqueeze(1) - ed) * beta
                p = torch.exp(u) * w  # (B, C), unnormalised responsibilities
                (g,) = torch.autograd.grad(e, y_, grad_outputs=p)
                grad = grad * scale.reshape(expand) + g
                t_chunk = p.sum(1)
                t = t * scale + t_chunk
                s = s * scale + mass * torch.expm1(d) + _sum_expm1(u, w, t_chunk, inplace=True)
                mass += float(w.sum())
                m = m_new
        free = _finish((m, t, s), log_total, beta)
        return free, grad / t.reshape(expand)

    # -- z-side queries ---------------------------------------------------------------------

    def argmin_z(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        r"""Return :math:`\check z = \arg\min_z E(x, y, z)` for each row, ``(B, *z_shape)``.

        Exact over a finite latent set (the first minimiser on ties); by multi-start descent
        for :class:`Minimize`.
        """
        self._check_input(y, x)
        if isinstance(self.latent, Minimize):
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
        if isinstance(self.latent, Minimize):
            raise ValueError(
                "responsibilities need a finite latent set (Grid, Discrete or MonteCarlo); "
                "got Minimize"
            )
        parts, logs = [], []
        for z, log_w in self._chunks(y):
            parts.append(
                self._guarded(lambda z=z: self.latent_energy.pairwise(y, z, _detach(x)))
            )
            logs.append(log_w)
        e = torch.cat(parts, 1)
        self._raise_bad(y, ~torch.isfinite(e).all(1))
        if math.isinf(self.beta):
            out = torch.zeros_like(e)
            return out.scatter_(1, e.argmin(1, keepdim=True), 1.0)
        return torch.softmax(torch.cat(logs).unsqueeze(0) - self.beta * e, dim=1)


def _detach(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.detach()


# -- the finite-β log-sum-exp in a form that stays exact as β → 0 ------------------------------
#
# F = m − (log W + log Σ_k p_k e^{β(m − E_k)}) / β with m = min_k E_k, p = w / W (Σ p = 1) and
# W the total weight (1 for "mean"). The naive log Σ w e^{−βE} rounds log w (≈ −log|Z|) to the
# working precision, an error that 1/β amplifies (float32, β = 1e-9: 30.6 for a mean energy of
# 3.1). Here the sum T = Σ p e^{u} (u = β(m − E) <= 0) is kept together with
# S = Σ p expm1(u) = T − 1: log T is used when T < 1/2 (β large against the energy spread),
# log1p(S) otherwise, where S ≈ −β·mean(E − m) keeps its relative precision however small β is.


def _weights(log_w: Tensor, log_total: float) -> Tensor:
    """The chunk's normalised weights p = w / W."""
    return torch.exp(log_w - log_total) if log_total else torch.exp(log_w)


def _parts(e: Tensor, w: Tensor, beta: float, *, inplace: bool = False) -> tuple[
        Tensor, Tensor, Tensor]:
    """A chunk's ``(m, T, S)``: its row minima (detached) and the two sums against them.

    S is summed from ``expm1`` only when some row has T above half the chunk's weight (β small
    against that row's energy spread); otherwise ``S = T − Σ p`` loses nothing.
    """
    m = e.detach().amin(1)
    w = w.to(e.dtype)  # an energy may compute in another dtype than y's (promotion)
    if inplace:  # no graph: reuse the buffer
        u = torch.sub(m.unsqueeze(1), e).mul_(beta)
    else:
        u = (m.unsqueeze(1) - e) * beta
    t = torch.exp(u) @ w
    return m, t, _sum_expm1(u, w, t, inplace=inplace)


def _sum_expm1(u: Tensor, w: Tensor, t: Tensor, *, inplace: bool = False) -> Tensor:
    """``Σ w expm1(u)`` per row, from ``t = Σ w e^u`` where that is exact enough."""
    mass = w.sum()
    if bool((t.detach() > 0.5 * mass).any()):
        return (torch.expm1_(u) if inplace else torch.expm1(u)) @ w
    return t - mass


def _merge(a: tuple[Tensor, Tensor, Tensor], b: tuple[Tensor, Tensor, Tensor],
           beta: float, mass_a: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Combine two ``(m, T, S)`` of disjoint sets of z (their weights' sums from T − S)."""
    (m1, t1, s1), (m2, t2, s2) = a, b
    m = torch.minimum(m1, m2)
    d1, d2 = (m - m1) * beta, (m - m2) * beta
    e1, e2 = torch.exp(d1), torch.exp(d2)
    w1 = (t1 - s1).detach()  # Σ p over each part (T − S = Σ p exactly in exact arithmetic)
    w2 = (t2 - s2).detach()
    return m, t1 * e1 + t2 * e2, s1 * e1 + w1 * torch.expm1(d1) + s2 * e2 + w2 * torch.expm1(d2)


def _finish(acc: tuple[Tensor, Tensor, Tensor], log_total: float, beta: float) -> Tensor:
    m, t, s = acc
    use_log = t < 0.5
    lse = torch.where(use_log, torch.log(torch.where(use_log, t, 1.0)),
                      torch.log1p(torch.where(use_log, 0.0, s)))
    return m - (lse + log_total) / beta
