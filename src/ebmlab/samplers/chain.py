"""The result of ``eb.sample``: :class:`Chain`, its summary and the end-of-run warning."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ebmlab.samplers import diagnostics
from ebmlab.warnings import SamplerWarning

__all__ = [
    "Chain",
    "stack_info",
    "warn_if_troubled",
    "R_HAT_LIMIT",
    "ESS_LIMIT",
    "STUCK_ACCEPTANCE",
    "SUMMARY_CHAINS",
]

# The thresholds of the end-of-run SamplerWarning (Vehtari et al. 2021's recommendations).
R_HAT_LIMIT = 1.01
ESS_LIMIT = 100.0
# A chain whose mean acceptance over the last adaptation window is below this is stuck.
STUCK_ACCEPTANCE = 0.01
# Chain.summary (and so the end-of-run warning) computes R-hat and ESS on at most this many
# chains, evenly spaced (see Chain.summary).
SUMMARY_CHAINS = 1024


@dataclass(frozen=True)
class Chain:
    """The kept samples of a run of :func:`sample` and the per-step diagnostics.

    Attributes:
        samples: ``(T, chains, *y_shape)``, T = ``num_steps // thin`` (1 with
            ``keep="last"``, whose diagnostics need more samples: R-hat and ESS are NaN).
        energy: :math:`F(x, y)` of every sample, ``(T, chains)``.
        info: the kernel's Info record with every field stacked along T, ``(T, chains)``.
        step_size: the step size used after burn-in (adapted or as given); with per-chain
            adaptation the median over the chains (see ``step_sizes``).
        state: the final state, to continue the chains with ``kernel.step``.
        step_sizes: the per-chain step sizes after burn-in ``(chains,)`` (``None`` when the
            step size was not adapted per chain).
        mass: the adapted diagonal mass matrix, ``(chains, *y_shape)`` per chain or
            ``y_shape`` shared (``None`` when not adapted).
        kernel: the kernel used after burn-in (adapted step sizes and mass), to continue.
        num_divergent: divergent steps per chain over all ``num_steps`` sampling steps
            (thinned-out steps included), ``(chains,)``.
        num_reinitialised: chains found stuck at the end of burn-in and restarted from a
            healthy chain's state.
        num_stuck: chains found stuck that could not be restarted (no healthy chain, or
            ``adapt="shared"``, which never moves a chain).
    """

    samples: Tensor
    energy: Tensor
    info: NamedTuple
    step_size: float
    state: Any
    step_sizes: Tensor | None = None
    mass: Tensor | None = None
    kernel: Any = None
    num_divergent: Tensor | None = None
    num_reinitialised: int = 0
    num_stuck: int = 0

    def summary(self) -> dict[str, float]:
        """Return the headline diagnostics as numbers.

        Keys: ``num_samples``, ``num_chains``, ``step_size``, ``acceptance_rate`` (mean),
        ``num_divergent`` (total over the sampling steps), ``ess_min`` and ``ess_mean`` (bulk
        ESS over coordinates), ``ess_bulk_min``, ``ess_tail_min``, ``r_hat_max``
        (rank-normalised), ``mcse_max`` (of the mean), ``num_reinitialised``, ``num_stuck``
        (at the end of burn-in) and ``num_stuck_sampling`` (chains that barely moved while
        sampling, see :meth:`stuck_chains`).

        R-hat, the ESS and the MCSE are undefined with fewer than 4 samples per chain: they
        are NaN then (and the end-of-run warning does not report them). With more than
        ``SUMMARY_CHAINS`` = 1,024 chains they are computed on 1,024 of them, evenly spaced
        (chains ``i * num_chains // 1024``: the same subset every time), and the ESS figures
        are scaled to all the chains (:func:`ebmlab.diagnostics.rank_diagnostics` with
        ``max_chains=1024``): 1,024 chains pin R-hat down far more tightly than the 4 it is
        usually computed on, and the checks stay a small fraction of a short run at 10,000
        chains. The stuck-chain and divergence counts use every chain. For the figures over
        all chains call :func:`ebmlab.diagnostics.r_hat` and friends on ``samples``.

        Raises:
            ValueError: for a chain without samples or chains.
        """
        return self._checks()[0]

    def _checks(self, full: bool = True) -> tuple[dict[str, float], Tensor]:
        """The summary and the indices of the chains stuck while sampling (computed once);
        ``full=False`` leaves out (NaN) the figures the end-of-run warning does not use: the
        tail ESS and the MCSE."""
        flat = self.samples.flatten(2)
        if flat.shape[0] == 0 or flat.shape[1] == 0:
            raise ValueError(
                f"Chain.summary needs at least one sample and one chain; samples have shape "
                f"{tuple(self.samples.shape)}"
            )
        if flat.shape[0] >= 4:
            d = diagnostics.rank_diagnostics(flat, max_chains=SUMMARY_CHAINS, tail=full)
            bulk, tail, r_hat, mcse = d.ess_bulk, d.ess_tail, d.r_hat, d.mcse
        else:
            bulk = tail = r_hat = mcse = torch.full(flat.shape[2:], math.nan)
        info = self.info
        rate = getattr(info, "acceptance_rate", None)
        divergent = self.num_divergent
        if divergent is None:
            divergent = (diagnostics.num_divergent(info) if hasattr(info, "is_divergent")
                         else torch.zeros(()))
        frozen = self.stuck_chains()
        return {
            "num_samples": float(flat.shape[0]),
            "num_chains": float(flat.shape[1]),
            "step_size": float(self.step_size),
            "acceptance_rate": math.nan if rate is None else float(rate.double().mean()),
            "num_divergent": float(divergent.sum()),
            "ess_min": _nan_min(bulk),
            "ess_mean": float(bulk.nanmean()) if bulk.numel() else math.nan,
            "ess_bulk_min": _nan_min(bulk),
            "ess_tail_min": _nan_min(tail),
            "r_hat_max": _nan_max(r_hat),
            "mcse_max": _nan_max(mcse),
            "num_reinitialised": float(self.num_reinitialised),
            "num_stuck": float(self.num_stuck),
            "num_stuck_sampling": float(frozen.numel()),
        }, frozen

    def stuck_chains(self) -> Tensor:
        """Return the indices of the chains that barely moved while sampling.

        A chain is flagged when its kept samples vary far less than the median chain's
        (:func:`ebmlab.diagnostics.stuck_chains`: geometric mean over coordinates of the
        variance ratio below 0.01), e.g. a NUTS chain deep in a funnel's neck whose tiny
        adapted step is accepted but takes it nowhere. Empty with fewer than 4 samples or 3
        chains.
        """
        flat = self.samples.flatten(2)
        if not flat.is_floating_point() or flat.shape[0] < 4:
            return torch.zeros(0, dtype=torch.long)
        return diagnostics.stuck_chains(flat).nonzero().flatten().cpu()


def _nan_min(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.min()) if t.numel() else math.nan


def _nan_max(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.max()) if t.numel() else math.nan


def stack_info(infos: list[Any]) -> Any:
    """Stack a list of Info records field by field along a new first dimension."""
    return type(infos[0])(*(torch.stack(field) for field in zip(*infos, strict=True)))


def warn_if_troubled(chain: Chain, stacklevel: int = 3) -> None:
    """Issue one SamplerWarning naming every figure out of bounds (silent when healthy)."""
    s, frozen = chain._checks(full=False)
    problems, advice = [], []
    if s["num_divergent"] > 0:
        chains = int((chain.num_divergent > 0).sum()) if chain.num_divergent is not None else 0
        problems.append(f"{int(s['num_divergent'])} divergent steps after burn-in (in {chains} "
                        f"of {int(s['num_chains'])} chains)")
        advice.append("a smaller step size (or a higher target_acceptance)")
    if s["r_hat_max"] > R_HAT_LIMIT:
        problems.append(f"R-hat {s['r_hat_max']:.3f} > {R_HAT_LIMIT}")
        advice.append("a longer burn_in and more steps, or tempering "
                      "(eb.samplers.ParallelTempering) if the target has separated modes")
    if math.isnan(s["r_hat_max"]) and s["num_samples"] >= 4:
        problems.append("R-hat undefined (the chains did not move)")
        advice.append("a smaller step size (or a higher target_acceptance)")
    if s["ess_bulk_min"] < ESS_LIMIT:
        problems.append(f"bulk ESS {s['ess_bulk_min']:.0f} < {ESS_LIMIT:.0f}")
        advice.append("more steps or more chains")
    if s["num_reinitialised"] or s["num_stuck"]:
        problems.append(
            f"{int(s['num_reinitialised'] + s['num_stuck'])} chains stuck at the end of burn-in "
            f"({int(s['num_reinitialised'])} re-initialised from healthy chains)"
        )
        advice.append("a longer burn_in or starting points nearer the mass")
    if frozen.numel():
        shown = ", ".join(str(i) for i in frozen[:10].tolist())
        more = f" and {frozen.numel() - 10} more" if frozen.numel() > 10 else ""
        problems.append(
            f"{frozen.numel()} chains barely moved while sampling (chains {shown}{more}: "
            f"position variance below 1 % of the median chain's, e.g. trapped in a funnel's "
            f"neck)"
        )
        advice.append("a longer burn_in, a reparameterisation of the narrow region, or "
                      "dropping those chains")
    if problems:
        tries = "; ".join(dict.fromkeys(advice))
        warnings.warn(
            "eb.sample: the samples may not be trustworthy: " + "; ".join(problems)
            + f". Try {tries}.",
            SamplerWarning,
            stacklevel=stacklevel,
        )
