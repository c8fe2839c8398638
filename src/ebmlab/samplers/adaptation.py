"""Dual-averaging step-size adaptation towards a target acceptance rate (Nesterov, NUTS paper)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["DualAveraging"]


class DualAveraging:
    r"""Tune a step size so that the mean acceptance rate approaches ``target``.

    Implements Algorithm 5 of Hoffman and Gelman (2014): with :math:`\mu = \log(10 h_0)`,
    :math:`\bar H_m = (1 - \tfrac{1}{m+t_0})\bar H_{m-1} + \tfrac{1}{m+t_0}(\delta - \alpha_m)`,
    :math:`\log h_m = \mu - \tfrac{\sqrt m}{\gamma}\bar H_m` and the averaged iterate
    :math:`\log \bar h_m = m^{-\kappa}\log h_m + (1 - m^{-\kappa})\log \bar h_{m-1}`, which is
    the step size to keep after adaptation. The state stays in 0-dim tensors on the device of
    the chains, so an update never synchronises with the host.

    Per-chain adaptation passes a tensor ``step_size`` (one :math:`h_0` per chain) and
    per-chain acceptance rates; every chain then runs its own recursion.

    Args:
        step_size: the initial step :math:`h_0` (a number, or a tensor of per-chain steps).
        target: the target acceptance rate :math:`\delta`.
        like: a tensor giving the dtype and device.
        gamma, t0, kappa: the constants of the paper (0.05, 10, 0.75).

    References:
        Hoffman and Gelman, "The No-U-Turn Sampler", JMLR, 2014, arXiv:1111.4246, sec. 3.2.

    Example:
        >>> import torch
        >>> da = DualAveraging(1.0, 0.8, torch.zeros(()))
        >>> h = torch.tensor(1.0)
        >>> for _ in range(1000):  # a toy sampler whose acceptance rate is exp(-h)
        ...     h = da.update(torch.exp(-h))
        >>> round(da.final_step_size(), 1)  # -log(0.8) = 0.223
        0.2
    """

    def __init__(
        self,
        step_size: float | Tensor,
        target: float,
        like: Tensor,
        *,
        gamma: float = 0.05,
        t0: float = 10.0,
        kappa: float = 0.75,
    ) -> None:
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.initial = step_size
        self.count = 0
        zero = torch.zeros((), dtype=like.dtype, device=like.device)
        if isinstance(step_size, Tensor):
            log_step = step_size.to(like.dtype).log()
            self.mu = log_step + math.log(10.0)
            zero = torch.zeros_like(log_step)
            self.log_step = log_step
        else:
            self.mu = math.log(10.0 * step_size)
            self.log_step = zero + math.log(step_size)
        self.h_bar = zero
        self.log_step_avg = zero

    def update(self, acceptance_rate: Tensor) -> Tensor:
        """Take the mean acceptance of the last step (0-dim); return the next step size."""
        self.count += 1
        m = self.count
        eta = 1.0 / (m + self.t0)
        self.h_bar = torch.lerp(self.h_bar, self.target - acceptance_rate, eta)
        self.log_step = self.mu - (math.sqrt(m) / self.gamma) * self.h_bar
        self.log_step_avg = torch.lerp(self.log_step_avg, self.log_step, m ** (-self.kappa))
        return self.log_step.exp()

    def final(self) -> Tensor:
        """Return the averaged step size as a tensor (per chain when adapting per chain)."""
        if self.count == 0:
            return self.log_step.exp()
        return self.log_step_avg.exp()

    def final_step_size(self) -> float:
        """Return the averaged step size :math:`\\bar h` as a number (one host read)."""
        if self.count == 0:
            return self.initial
        return float(self.log_step_avg.exp())
