"""Divergence during training: the check, the good states kept in memory, and the rollback."""

from __future__ import annotations

import copy
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.training import distributed, state
from ebmlab.training.run import DivergenceError, History

__all__ = [
    "ON_DIVERGENCE",
    "MAX_ROLLBACKS",
    "ROLLBACK_LR_FACTOR",
    "KEPT_STATES",
    "MAX_ENERGY_GAP",
    "GRAD_NORM_JUMP",
    "GRAD_NORM_MIN_INTERVALS",
    "GoodState",
    "DivergenceGuard",
]

_logger = logging.getLogger("ebmlab.training")  # the loop's logger: one stream of messages

ON_DIVERGENCE = ("rollback", "raise", "ignore")
MAX_ROLLBACKS = 5  # consecutive rollbacks (no progress past the divergence) before raising
ROLLBACK_LR_FACTOR = 0.5  # each rollback multiplies the learning rate (and the scheduler's) by it
KEPT_STATES = 4  # good states kept in memory (one per logging point) to roll back to
MAX_ENERGY_GAP = 1e4  # |mean E(negatives) - mean E(data)| past this is a divergence
# An interval whose largest gradient norm is a new high of the run and past GRAD_NORM_JUMP
# times the median of the earlier intervals' (since the start or the resume; at least
# GRAD_NORM_MIN_INTERVALS of them) is a divergence: the check that also sees the losses without
# negatives (no energy gap), e.g. a recovery likelihood whose Langevin chains blew up.
GRAD_NORM_JUMP = 100.0
GRAD_NORM_MIN_INTERVALS = 4

@dataclass
class GoodState:
    """A good state kept in memory at a logging point, to roll back to."""

    step: int
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: Any
    negatives: dict[str, Tensor] | None
    generator: Tensor
    torch_rng: Tensor
    num_records: int
    scale: float  # the learning-rate scale of the rollbacks made before this state
    num_grad_peaks: int  # how many intervals' largest gradient norms were kept before it


@dataclass
class DivergenceGuard:
    """The divergence check, the good state kept in memory and the rollback."""

    mode: str
    energy: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    negatives: Any
    generator: torch.Generator
    history: History
    seed: int
    rank: int
    world: int
    skipped: int = 0
    goods: deque[GoodState] = field(default_factory=lambda: deque(maxlen=KEPT_STATES))
    scale: float = 1.0  # product of the rollbacks' learning-rate factors
    streak: int = 0  # rollbacks since training last got past the step that diverged
    bad_step: int = -1
    checks: bool = field(init=False)
    peak: Tensor | None = None  # the largest gradient norm since the last logging point
    grad_peaks: list[float] = field(default_factory=list)  # each interval's largest norm

    def __post_init__(self) -> None:
        self.checks = self.mode != "ignore"

    def is_finite_step(self, row: Tensor, params: list[nn.Parameter], has_neg: bool) -> bool:
        """Whether the step's loss, mean energies and gradient are finite (one scalar read)."""
        grads = [p.grad for p in params if p.grad is not None]
        total = row[0] + row[1] + (row[2] if has_neg else 0.0)
        if grads:
            norm = torch.nn.utils.get_total_norm(grads, foreach=True)
            total = total + norm
            if self.checks:  # kept on the device, read at the logging point
                self.peak = norm.detach() if self.peak is None else torch.maximum(
                    self.peak, norm.detach())
        bad = (~torch.isfinite(total)).to(row.dtype)
        if self.world > 1:
            bad = distributed.all_reduce_mean(bad)  # every rank takes the same decision
        return not bool(bad)

    def check_interval(self, record: dict[str, float], params: list[nn.Parameter]) -> str | None:
        """At a logging point: finite parameters, a bounded energy gap and no jump of the
        gradient norm (``GRAD_NORM_JUMP``), or the reason."""
        if not self.checks:
            return None
        peak = math.nan if self.peak is None else float(self.peak)
        self.peak = None  # (the same on every rank: DistributedDataParallel averages gradients)
        tensors = [p.detach() for p in params] + [
            b for b in self.energy.buffers() if b.is_floating_point()
        ]
        if tensors and not bool(torch.isfinite(torch.cat([t.flatten() for t in tensors])).all()):
            return "non-finite parameters"
        gap = record.get("gap", math.nan)
        if math.isfinite(gap) and abs(gap) > MAX_ENERGY_GAP:
            return f"an energy gap of {gap:.4g} (past {MAX_ENERGY_GAP:g})"
        peaks = self.grad_peaks
        if len(peaks) >= GRAD_NORM_MIN_INTERVALS and peak > max(peaks):
            median = sorted(peaks)[len(peaks) // 2]
            if peak > GRAD_NORM_JUMP * median:
                return (f"a gradient norm of {peak:.4g}, {peak / median:.3g} times the median "
                        f"of the {len(peaks)} earlier logging intervals' (past "
                        f"{GRAD_NORM_JUMP:g})")
        if math.isfinite(peak):
            peaks.append(peak)
        return None

    def keep(self, step: int) -> None:
        """Remember the current state as the last good one (the last few are kept)."""
        if step > self.bad_step:
            self.streak = 0
        neg = self.negatives
        self.goods.append(GoodState(
            step=step,
            model={k: v.detach().clone() for k, v in self.energy.state_dict().items()},
            optimizer=copy.deepcopy(self.optimizer.state_dict()),
            scheduler=None if self.scheduler is None else copy.deepcopy(
                self.scheduler.state_dict()),
            negatives={k: v.clone() for k, v in neg.state_dict().items()}
            if state.is_stateful(neg) else None,
            generator=self.generator.get_state(),
            torch_rng=torch.get_rng_state(),
            num_records=len(self.history.records),
            scale=self.scale,
            num_grad_peaks=len(self.grad_peaks),
        ))

    def diverged(self, step: int, reason: str, last_checkpoint: Path | None, bar: Any) -> int:
        """Handle a divergence seen at ``step``: raise, or roll back; return the step to redo.

        The first rollback restores the last good state; each further one before training
        gets past ``step`` again goes one kept state further back (a state just before a
        divergence can already be on its way there). The learning rate is halved each time.
        """
        used = len(self.history.rollbacks)
        if self.mode == "raise" or not self.goods or (
            self.streak >= MAX_ROLLBACKS and step <= self.bad_step
        ):
            kept = (
                f"the last good checkpoint is {last_checkpoint}"
                if last_checkpoint is not None
                else "no checkpoint was written before it"
            )
            tail = "" if self.mode == "raise" else f" after {self.streak} rollbacks in a row"
            raise DivergenceError(
                f"training diverged at step {step}: {reason}{tail}; {kept}. Lower the learning "
                "rate, clip gradients (clip_grad_norm=...), or regularise the energies "
                "(eb.losses.energy_l2).",
                step,
                last_checkpoint,
                self.history,
            )
        if step > self.bad_step:
            self.streak = 0
        self.streak += 1
        self.bad_step = max(self.bad_step, step)
        if self.streak > 1 and len(self.goods) > 1:
            self.goods.pop()
        good = self.goods[-1]
        self.peak = None
        del self.grad_peaks[good.num_grad_peaks:]
        self.scale *= ROLLBACK_LR_FACTOR
        factor = self.scale / good.scale
        self.energy.load_state_dict(good.model)
        self.optimizer.load_state_dict(copy.deepcopy(good.optimizer))
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * factor
        if self.scheduler is not None:
            self.scheduler.load_state_dict(copy.deepcopy(good.scheduler))
            if hasattr(self.scheduler, "base_lrs"):
                self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
        if good.negatives is not None:
            self.negatives.load_state_dict({k: v.clone() for k, v in good.negatives.items()})
        if hasattr(self.negatives, "reset"):
            self.negatives.reset()  # chains restart from noise
        torch.set_rng_state(good.torch_rng)
        self.generator.manual_seed(distributed.derive_seed(
            self.seed * 1_000_003 + 7919 * (used + 1) + good.step, self.rank))
        del self.history.records[good.num_records:]
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.history.rollbacks.append(
            {"step": step, "restored": good.step, "reason": reason, "lr": lr})
        _logger.warning("training diverged at step %d (%s): rolled back to step %d, learning "
                        "rate now %.3g (rollback %d in a row of at most %d)", step, reason,
                        good.step, lr, self.streak, MAX_ROLLBACKS)
        if bar is not None:
            bar.n = good.step
            bar.set_postfix(rollbacks=used + 1)
            bar.refresh()
        return good.step
