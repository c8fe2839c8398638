"""One step of ``eb.fit`` and its logging points: the loss, the statistics read, the bar.

:class:`Objective` draws the negatives and evaluates loss + regulariser; :func:`log_point`
reads the statistics gathered since the last logging point (one synchronisation), records
them, calls the callbacks back and moves the progress bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.energy import check_energy_output
from ebmlab.training import distributed
from ebmlab.training.callbacks import Callback
from ebmlab.training.divergence import DivergenceGuard
from ebmlab.training.negatives import check_negatives_output
from ebmlab.training.run import DivergenceError, LossSpec, Run

__all__ = ["Objective", "flat_energy", "log_point", "flush", "progress_bar"]


def flat_energy(energy: nn.Module, y_neg: Tensor, x: Tensor | None, event_ndim: int) -> Tensor:
    """Energies of negatives (B, *y_shape) -> (B,) or (B, K, *y_shape) -> (B, K)."""
    if y_neg.ndim == event_ndim + 1:
        return energy(y_neg, x)
    b, k = y_neg.shape[:2]
    xr = None if x is None else x.repeat_interleave(k, dim=0)  # (B, ...) -> (B*K, ...)
    return energy(y_neg.reshape(b * k, *y_neg.shape[2:]), xr).reshape(b, k)


@dataclass(frozen=True)
class Objective:
    """One step's loss: draw the negatives, evaluate the energies, call loss + regulariser."""

    spec: LossSpec
    reg: LossSpec | None
    negatives: Any
    needs_negatives: bool

    def __call__(
        self, model: nn.Module, energy: nn.Module, y: Tensor, x: Tensor | None,
        generator: torch.Generator, event_ndim: int, *, is_first: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        spec, reg, negatives = self.spec, self.reg, self.negatives
        y_neg = None
        # Negatives of the marginal (is_marginal, e.g. JEM's) are drawn and scored without x.
        x_neg = None if getattr(negatives, "is_marginal", False) else x
        if self.needs_negatives:
            y_neg = negatives(energy, y, x_neg, generator=generator)
            if is_first:
                check_negatives_output(y_neg, y)
        e_pos = model(y, x)
        if is_first:  # once per run: an energy of shape (B, 1) would broadcast in the loss
            check_energy_output(e_pos, y.shape[0], f"energy {type(energy).__name__}")
        e_neg = flat_energy(model, y_neg, x_neg, event_ndim) if y_neg is not None else None
        values = {
            "e_pos": e_pos, "e_data": e_pos, "e_neg": e_neg, "e_min": e_neg,
            "e_noise": e_neg, "e_all": e_neg, "energy": energy, "y": y, "x": x,
            "generator": generator,
        }
        if spec.needs_noise_density:
            values["log_q_data"] = negatives.log_prob(y, event_ndim=event_ndim)
            values["log_q_noise"] = negatives.log_prob(y_neg, event_ndim=event_ndim)
        value = spec.fn(**{k: values[k] for k in spec.inputs}, **spec.options)
        if reg is not None:
            value = value + reg.fn(**{k: values[k] for k in reg.inputs}, **reg.options)
        return value, e_pos, e_neg


def log_point(
    stats: Tensor, run: Run, last_checkpoint: Path | None, has_negatives: bool, began: float,
    callbacks: Sequence[Callback], bar: Any, guard: DivergenceGuard,
) -> dict[str, float]:
    """One logging point: read the statistics (mean over ranks), record, call back, show."""
    block = distributed.all_reduce_mean(stats)  # mean over ranks
    record = flush(block, run.step, last_checkpoint, has_negatives, strict=guard.checks)
    record["lr"] = float(run.optimizer.param_groups[0]["lr"])
    record["time"] = time.perf_counter() - began
    if guard.history.rollbacks:
        record["rollbacks"] = len(guard.history.rollbacks)
    if guard.skipped:
        record["skipped"] = guard.skipped
    for cb in callbacks:
        record.update(cb.evaluate(run) or {})
    run.history.records.append(record)
    for cb in callbacks:
        cb.on_log(run, record)
    if bar is not None:
        bar.n = run.step - stats.shape[0]
        bar.update(stats.shape[0])
        # A metric that does not apply (the gap without negatives) is left out, not shown NaN.
        postfix = {k: f"{record[k]:.4g}" for k in ("loss", "gap")
                   if k in record and math.isfinite(record[k])}
        if guard.history.rollbacks:
            postfix["rollbacks"] = str(len(guard.history.rollbacks))
        bar.set_postfix(postfix)
    return record


def progress_bar(progress: bool, total: int, initial: int, description: str) -> Any:
    """A tqdm bar, or ``None`` without ``progress``."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True, leave=True)


def flush(
    block: Tensor, done: int, last_checkpoint: Path | None, has_negatives: bool,
    strict: bool = True,
) -> dict[str, float]:
    """Read the pending statistics once; raise on the first non-finite step if ``strict``.

    Not strict (``on_divergence="ignore"``), the skipped non-finite steps are left out of
    the means.
    """
    values = block.tolist()  # the one synchronisation per logging interval
    first = done - len(values) + 1
    if not strict:
        finite_rows = [v for v in values if all(math.isfinite(u) for u in v[: 3 if has_negatives
                                                                       else 2])]
        values = finite_rows or values
    for i, (loss, e_pos, e_neg) in enumerate(values if strict else []):
        if not (math.isfinite(loss) and math.isfinite(e_pos)) or (
            has_negatives and not math.isfinite(e_neg)
        ):
            step = first + i
            kept = (
                f"the last good checkpoint is {last_checkpoint}"
                if last_checkpoint is not None
                else "no checkpoint was written before it"
            )
            raise DivergenceError(
                f"training diverged at step {step}: loss={loss}, mean energy of the data="
                f"{e_pos}, of the negatives={e_neg} (not finite); {kept}. Lower the learning "
                "rate, clip gradients (clip_grad_norm=...), or regularise the energies "
                "(eb.losses.energy_l2).",
                step,
                last_checkpoint,
            )
    n = len(values)
    loss = sum(v[0] for v in values) / n
    e_pos = sum(v[1] for v in values) / n
    record = {"step": done, "loss": loss, "energy_pos": e_pos}
    if has_negatives:  # without negatives the gap does not apply: left out, not NaN
        e_neg = sum(v[2] for v in values) / n
        record.update(energy_neg=e_neg, gap=e_neg - e_pos)
    return record
