"""Parallel tempering (replica exchange): a kernel that runs a base kernel at several betas."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ebmlab.energy import Energy

__all__ = ["ParallelTempering", "PTState", "PTInfo"]


class PTState(NamedTuple):
    """The target replica's ``position`` and ``energy`` (what :func:`ebmlab.sample` keeps),
    the base kernel's state of all replicas stacked as ``(K * chains, ...)`` rows (replica
    k holds rows ``k * chains ... (k + 1) * chains``, with energies scaled by
    :math:`\\beta_k/\\beta_0`), and the step count (which neighbour pairs swap next)."""

    position: Tensor
    energy: Tensor
    replicas: Any
    count: int


class PTInfo(NamedTuple):
    """What one step did.

    Attributes:
        acceptance_rate, is_accepted, is_divergent: the base kernel's, for the target
            replica ``(chains,)``.
        swap_rate: ``(K - 1, chains)``: the acceptance probability of the swap between
            replicas k and k + 1, NaN for the pairs not proposed at this step.
    """

    acceptance_rate: Tensor
    is_accepted: Tensor
    is_divergent: Tensor
    swap_rate: Tensor


class _Scaled(Energy):
    """Row-scaled energy: rows of replica k see :math:`(\\beta_k/\\beta_0) F`."""

    def __init__(self, energy: Energy, scale: Tensor) -> None:
        super().__init__()
        self.energy = energy
        self.scale = scale  # (K * chains,)
        self.y_shape = energy.y_shape

    def forward(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        return self.energy.forward(y, x) * self.scale

    def energy_and_grad(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        e, g = self.energy.energy_and_grad(y, x)
        return e * self.scale, g * self.scale.view(-1, *([1] * (g.ndim - 1)))

    def select_rows(self, index: Tensor) -> _Scaled:
        """The energy of rows ``index`` of the batch (NUTS's compaction calls it)."""
        return _Scaled(self.energy, self.scale[index])


class ParallelTempering:
    r"""Replica exchange: one copy of every chain at each inverse temperature.

    Replica k targets :math:`e^{-\beta_k F}`; every step moves all replicas with the base
    kernel (one batched call: replica k sees the energy :math:`r_k F`, :math:`r_k =
    \beta_k/\beta_0`, with the kernel's own :math:`\beta_0`, and the kernel's step rescaled
    to the replica's width, lengths times :math:`r_k^{-1/2}`: so MALA's and Langevin's
    ``step_size`` h becomes :math:`h/r_k`, HMC's, NUTS's and the random walk's
    :math:`\epsilon/\sqrt{r_k}`; exactly the base kernel built with ``beta`` = β_k),
    then proposes swaps between neighbours, the even pairs
    (0-1, 2-3, ...) on even steps and the odd pairs on odd steps (deterministic even-odd
    exchange), each accepted with probability
    :math:`\min(1, e^{(\beta_k - \beta_{k+1})(F(y_k) - F(y_{k+1}))})`. Every replica keeps its
    law, so replica 0 samples the target while hot replicas carry it across barriers.
    :func:`ebmlab.sample` keeps the samples of replica 0; ``Info.swap_rate`` (and
    :meth:`swap_rates`) show where the ladder is too sparse (rates near 0: add betas there).
    The base kernel's step size is not adapted by :func:`ebmlab.sample` under tempering
    (one step for all temperatures would suit none); choose it for the target.

    Args:
        kernel: the base kernel (e.g. ``eb.samplers.MALA(0.1)``), built with the target's
            ``beta``.
        betas: decreasing inverse temperatures, ``betas[0]`` equal to the kernel's beta.

    Raises:
        TypeError: if ``kernel`` has no ``init``/``step``.
        ValueError: if ``betas`` has fewer than 2 entries, is not strictly decreasing and
            positive, or ``betas[0]`` is not the kernel's beta.

    References:
        Swendsen and Wang, "Replica Monte Carlo simulation of spin glasses", PRL, 1986;
        Earl and Deem, "Parallel tempering: theory, applications, and new perspectives",
        2005, arXiv:physics/0508111; Syed et al., "Non-reversible parallel tempering", JRSS B,
        2022, arXiv:1905.02939 (the even-odd scheme).

    Example:
        >>> import torch, ebmlab as eb
        >>> wells = eb.energies.GaussianMixture([[-3.0], [3.0]], 0.3)
        >>> pt = eb.samplers.ParallelTempering(eb.samplers.MALA(0.05), [1.0, 0.3, 0.1, 0.03])
        >>> chain = eb.sample(wells, torch.full((8, 1), -3.0), pt, 400,
        ...                   generator=torch.Generator().manual_seed(0))
        >>> bool((chain.samples > 0).any())  # crossed the barrier
        True
        >>> pt.swap_rates(chain.info).shape
        torch.Size([3])
    """

    def __init__(self, kernel: Any, betas: Sequence[float] | Tensor) -> None:
        if not all(callable(getattr(kernel, m, None)) for m in ("init", "step")):
            raise TypeError(
                f"kernel must have init() and step(); got {type(kernel).__name__}"
            )
        values = [float(b) for b in (betas.tolist() if isinstance(betas, Tensor) else betas)]
        if len(values) < 2:
            raise ValueError(f"betas must hold at least 2 inverse temperatures; got {values}")
        if not all(math.isfinite(b) and b > 0 for b in values) or any(
            b <= c for b, c in zip(values, values[1:], strict=False)
        ):
            raise ValueError(
                f"betas must be positive, finite and strictly decreasing; got {values}"
            )
        base_beta = float(getattr(kernel, "beta", 1.0))
        if abs(values[0] - base_beta) > 1e-12 * base_beta:
            raise ValueError(
                f"betas[0] must be the target's inverse temperature, the kernel's beta = "
                f"{base_beta}; got {values[0]}"
            )
        self.kernel = kernel
        self.betas = values
        self.beta = base_beta
        from ebmlab.samplers.langevin import Langevin
        from ebmlab.samplers.mala import MALA

        # step_size is a squared length for Langevin-type kernels, a length otherwise.
        self._power = 1.0 if isinstance(kernel, (MALA, Langevin)) else 0.5
        self._cache: tuple[Any, ...] | None = None

    def __repr__(self) -> str:
        return f"ParallelTempering({self.kernel!r}, betas={self.betas})"

    def _rows(self, chains: int, like: Tensor) -> Tensor:
        scale = torch.tensor([b / self.beta for b in self.betas], dtype=like.dtype,
                             device=like.device)
        return scale.repeat_interleave(chains)

    def _setup_rows(self, energy: Energy, y: Tensor, chains: int) -> tuple[_Scaled, Any]:
        """The row-scaled energy and the row-rescaled kernel, cached per energy and batch."""
        key = (id(energy), chains, y.dtype, y.device)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        scale = self._rows(chains, y)
        factor = scale.pow(-self._power).reshape(-1, *([1] * (y.ndim - 1)))
        kernel = self.kernel
        step = getattr(kernel, "step_size", None)
        if hasattr(kernel, "with_step_size"):
            kernel = kernel.with_step_size(step * factor)
        elif step is not None:
            kernel = copy.copy(kernel)
            kernel.step_size = step * factor
        scaled = _Scaled(energy, scale)
        self._cache = (key, scaled, kernel)
        return scaled, kernel

    @staticmethod
    def _x_rows(x: Tensor | None, k: int) -> Tensor | None:
        return None if x is None else x.repeat(k, *([1] * (x.ndim - 1)))

    def init(self, y0: Tensor, energy: Energy, x: Tensor | None = None) -> PTState:
        """Start every replica at ``y0`` ``(chains, *y_shape)``."""
        k, chains = len(self.betas), y0.shape[0]
        # Validate once on the target's rows (the kernel's own checks), then start all.
        self.kernel.init(y0, energy, x)
        rows = y0.repeat(k, *([1] * (y0.ndim - 1)))
        scaled, kernel = self._setup_rows(energy, rows, chains)
        inner = kernel.init(rows, scaled, self._x_rows(x, k))
        return PTState(y0, inner.energy[:chains], inner, 0)

    def step(
        self,
        state: PTState,
        energy: Energy,
        x: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[PTState, PTInfo]:
        """Move every replica with the base kernel, then propose neighbour swaps."""
        k = len(self.betas)
        chains = state.position.shape[0]
        y = state.replicas.position
        scaled, kernel = self._setup_rows(energy, y, chains)
        inner, info = kernel.step(state.replicas, scaled, self._x_rows(x, k),
                                  generator=generator)
        raw = (inner.energy / scaled.scale).reshape(k, chains)  # F per replica
        betas = torch.tensor(self.betas, dtype=raw.dtype, device=raw.device)
        log_r = (betas[:-1] - betas[1:]).unsqueeze(1) * (raw[:-1] - raw[1:])  # (K-1, C)
        rate = log_r.clamp(max=0.0).exp().nan_to_num(nan=0.0)
        u = torch.rand(rate.shape, generator=generator, dtype=rate.dtype, device=rate.device)
        parity = torch.arange(k - 1, device=rate.device) % 2 == state.count % 2
        swap = (u < rate) & parity.unsqueeze(1)  # (K-1, C)
        # Replica j takes k+1's state if pair (j, j+1) swaps, and j's if pair (j-1, j) does.
        index = torch.arange(k, device=rate.device).unsqueeze(1).expand(k, chains).clone()
        index[:-1] = torch.where(swap, index[1:], index[:-1])
        index[1:] = torch.where(swap, torch.arange(k - 1, device=rate.device).unsqueeze(1),
                                index[1:])
        rows = (index * chains + torch.arange(chains, device=rate.device)).reshape(-1)
        ratio = scaled.scale / scaled.scale[rows]
        fields = []
        for name, value in zip(inner._fields, inner, strict=True):
            if not isinstance(value, Tensor) or value.ndim == 0 or value.shape[0] != k * chains:
                fields.append(value)
                continue
            moved = value[rows]
            if name != "position":  # energies and gradients carry the replica's scale
                moved = moved * ratio.view(-1, *([1] * (moved.ndim - 1)))
            fields.append(moved)
        inner = type(inner)(*fields)
        swap_rate = torch.where(parity.unsqueeze(1), rate, torch.full_like(rate, math.nan))
        target = PTInfo(info.acceptance_rate[:chains], info.is_accepted[:chains],
                        info.is_divergent[:chains], swap_rate)
        return PTState(inner.position[:chains], inner.energy[:chains], inner,
                       state.count + 1), target

    @staticmethod
    def swap_rates(info: PTInfo) -> Tensor:
        """Mean swap acceptance of each neighbour pair ``(K - 1,)`` over a stacked Info."""
        rate = info.swap_rate
        rate = rate.transpose(0, -2) if rate.ndim == 3 else rate.unsqueeze(1)  # (K-1, T, C)
        return rate.reshape(rate.shape[0], -1).nanmean(1)

