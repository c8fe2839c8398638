r"""``eb.fit``: the training loop — progress, callbacks, divergence checks and exact resume.

The records it fills live in :mod:`ebmlab.training.run`, the checkpointed state in
:mod:`ebmlab.training.state`, the process group in :mod:`ebmlab.training.distributed`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab._checks import check_generator, check_positive, check_positive_int
from ebmlab.training import distributed, state
from ebmlab.training.batches import Batches, split_data
from ebmlab.training.callbacks import Callback, CSVLogger
from ebmlab.training.lock import locks_checkpoint_dir
from ebmlab.training.negatives import check_negatives_output
from ebmlab.training.run import DivergenceError, History, LossSpec, Run, resolve_loss

# History, Run, DivergenceError, resolve_loss and LossSpec are re-exported: they lived here.
__all__ = ["fit", "History", "Run", "DivergenceError", "resolve_loss", "LossSpec"]


def _flat_energy(
    energy: nn.Module, y_neg: Tensor, x: Tensor | None, event_ndim: int
) -> Tensor:
    """Energies of negatives (B, *y_shape) -> (B,) or (B, K, *y_shape) -> (B, K)."""
    if y_neg.ndim == event_ndim + 1:
        return energy(y_neg, x)
    b, k = y_neg.shape[:2]
    xr = None if x is None else x.repeat_interleave(k, dim=0)  # (B, ...) -> (B*K, ...)
    return energy(y_neg.reshape(b * k, *y_neg.shape[2:]), xr).reshape(b, k)


def _make_optimizer(
    optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None,
    energy: nn.Module,
) -> torch.optim.Optimizer:
    if optimizer is None:
        return torch.optim.Adam(energy.parameters(), lr=1e-3)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        made = optimizer(energy.parameters())
        if not isinstance(made, torch.optim.Optimizer):
            raise TypeError(f"optimizer factory returned {type(made).__name__}")
        return made
    raise TypeError(
        "optimizer must be a torch.optim.Optimizer, a factory params -> Optimizer, or None; "
        f"got {type(optimizer).__name__}"
    )


@locks_checkpoint_dir  # one writer per checkpoint_dir (rank 0 holds its lock file)
def fit(
    energy: nn.Module,
    data: Any,
    loss: str | Callable[..., Tensor],
    *,
    negatives: Callable[..., Tensor] | None = None,
    optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None = None,
    num_steps: int,
    batch_size: int = 256,
    loss_options: Mapping[str, Any] | None = None,
    regularizer: Callable[..., Tensor] | None = None,
    scheduler: Any = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    resume: bool = True,
    clip_grad_norm: float | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
    log_every: int = 50,
    progress: bool = True,
    description: str = "fit",
) -> History:
    r"""Train ``energy`` on ``data`` by minimising a loss functional; return its :class:`History`.

    Each step draws a mini-batch (stateless in the step number), asks ``negatives`` for the
    offending answers, evaluates the loss, back-propagates, clips and steps the optimiser. The
    loop itself adds only a few tensor operations per step: the running statistics stay on the
    device and are read (one synchronisation) every ``log_every`` steps, when the progress bar,
    the callbacks and the divergence check see them.

    Checkpoints hold the energy's parameters and buffers, the optimiser and scheduler, the
    negatives' replay buffer, every random state (``generator``, torch's global RNGs) and the
    history; they are written atomically (see :mod:`ebmlab.training.checkpoint`). With
    ``resume=True`` a run continues from the latest checkpoint in ``checkpoint_dir`` and ends
    bit-identical on CPU to a run that was never interrupted (same thread count). A metrics CSV
    is written to ``checkpoint_dir/metrics.csv``.

    Under ``torchrun --nproc_per_node N`` the same call trains data-parallel (see
    :mod:`ebmlab.training.distributed`): each process takes ``batch_size / N`` rows of the
    global batch, the energy is wrapped in ``DistributedDataParallel``, negatives are per rank
    (seeds derived from ``seed`` and the rank), the statistics are averaged over ranks, and
    rank 0 alone writes checkpoints, the CSV and the progress bar and runs the callbacks.

    Args:
        energy: the model, an :class:`ebmlab.Energy` (any module ``energy(y, x) -> (B,)``).
        data: answers ``y`` (N, *y_shape), a pair ``(x, y)`` as ``eb.data`` returns it, or a
            mapping ``{"y": ..., "x": ...}``.
        loss: a name of ``eb.losses.LOSSES`` or a callable whose parameter names say what it
            needs (see :func:`resolve_loss`), e.g. ``lambda e_pos, e_neg: ...``.
        negatives: a negative source (``eb.training.negatives``) called as
            ``negatives(energy, y, x, generator=...)``; required by contrastive losses. A
            source with ``is_marginal = True`` samples the marginal: it gets ``x=None`` and its
            negatives are scored as ``energy(y_neg)`` (JEM, ``eb.training.images``).
        optimizer: a ``torch.optim.Optimizer``, a factory ``params -> Optimizer``, or
            ``None`` for Adam with lr 1e-3.
        num_steps: total number of optimisation steps (including resumed ones).
        batch_size: rows per step (the whole data set when it is smaller).
        loss_options: fixed keyword options of the loss (``margin``, ``sigma``, ...).
        regularizer: optional callable added to the loss, named like a loss
            (e.g. ``lambda e_pos, e_neg: 0.1 * eb.losses.energy_l2(e_pos, e_neg)``).
        scheduler: an optional learning-rate scheduler, stepped once per step.
        callbacks: :class:`ebmlab.training.Callback` objects (logging, evaluation).
        checkpoint_dir: folder of checkpoints and metrics; ``None`` for none.
        checkpoint_every: steps between checkpoints (default: a tenth of ``num_steps``); one
            is always written at the end.
        keep_checkpoints: how many recent checkpoints to keep.
        resume: continue from the latest checkpoint in ``checkpoint_dir`` if there is one;
            with ``False`` a folder that holds checkpoints is refused.
        clip_grad_norm: clip the gradient's global norm to this value.
        seed: seeds the batches and, without ``generator``, the negatives and the loss.
        generator: the random source of negatives and stochastic losses (its state is
            checkpointed); by default one seeded with ``seed`` on the data's device.
        log_every: steps between statistics reads (progress bar, callbacks, divergence check).
        progress: show a tqdm progress bar (loss and energy gap).
        description: the progress bar's label.

    Returns:
        The :class:`History`.

    Raises:
        DivergenceError: the loss or an energy became non-finite; names the step and the last
            good checkpoint (no checkpoint is written after a divergence).
        ValueError, TypeError: bad arguments, or a checkpoint that fails its checks.

    Example:
        >>> import torch, ebmlab as eb
        >>> from ebmlab.training.negatives import Sampled
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = eb.energies.Quadratic(torch.eye(1) * 0.5, mean=[0.0])
        >>> data = 2.0 + 0.5 * torch.randn(2000, 1)
        >>> hist = eb.fit(model, data, "contrastive_divergence",
        ...               negatives=Sampled(num_steps=10, step_size=0.05, init="data"),
        ...               optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
        ...               num_steps=200, progress=False)
        >>> round(float(model.mean.detach()), 1)
        2.0
    """
    _check_arguments(energy, num_steps, batch_size, log_every, keep_checkpoints, generator,
                     seed, clip_grad_norm)
    spec = resolve_loss(loss, loss_options)
    reg = resolve_loss(regularizer) if regularizer is not None else None
    objective = _Objective(spec, reg, negatives, _needs_negatives(spec, reg, negatives))
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be ebmlab.training.Callback; got {type(cb).__name__}")
    y_all, x_all = split_data(data)
    batches = Batches(y_all, x_all, batch_size, seed)
    # Under torchrun: every rank draws the same global batch and keeps its slice (see
    # ebmlab.training.distributed); a single process has rank 0 of 1 and is unchanged.
    distributed.setup(device=y_all.device)
    rank, world = distributed.rank(), distributed.world_size()
    is_main = rank == 0
    part = _rank_rows(min(batches.num, batch_size), rank, world)
    generator = _rank_generator(generator, seed, rank, y_all.device)
    opt = _make_optimizer(optimizer, energy)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoint_every is None:
        checkpoint_every = max(1, num_steps // 10)
    check_positive_int(checkpoint_every, "checkpoint_every")
    callbacks = list(callbacks) if is_main else []  # callbacks and files: rank 0 only
    if folder is not None and is_main:
        callbacks.append(CSVLogger(folder / "metrics.csv"))

    history = History()
    start, last_checkpoint = state.resume(folder, resume, energy, opt, scheduler, negatives,
                                          generator, history, seed)
    history.checkpoint = last_checkpoint
    run = Run(energy, opt, start, num_steps, history, folder, is_resumed=start > 0)
    for cb in callbacks:
        cb.on_start(run)

    event_ndim = y_all.ndim - 1
    params = [p for p in energy.parameters() if p.requires_grad]
    stats: Tensor | None = None  # (log_every, 3) per-step statistics, read once per interval
    nan: Tensor | None = None
    bar = _progress(progress and is_main, num_steps, start, description)
    model = distributed.wrap(energy, y_all.device)  # DistributedDataParallel under torchrun
    step = start
    pending = 0  # steps whose statistics are still in `stats`
    began = time.perf_counter()
    energy.train()
    try:
        for step in range(start, num_steps):
            y, x = batches(step)
            if world > 1:
                y, x = y[part], None if x is None else x[part]
            value, e_pos, e_neg = objective(model, energy, y, x, generator, event_ndim,
                                            is_first=step == start)
            opt.zero_grad(set_to_none=True)
            value.backward()
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
            opt.step()
            if scheduler is not None:
                scheduler.step()
            if stats is None:
                stats = torch.zeros(log_every, 3, dtype=value.dtype, device=value.device)
                nan = torch.full((), math.nan, dtype=value.dtype, device=value.device)
            e_pos_mean = e_pos.detach().mean()
            e_neg_mean = nan if e_neg is None else e_neg.detach().mean()
            torch.stack((value.detach(), e_pos_mean, e_neg_mean), out=stats[pending])
            pending += 1
            done = step + 1
            is_checkpoint = folder is not None and (
                done % checkpoint_every == 0 or done == num_steps
            )
            if pending == log_every or is_checkpoint or done == num_steps:
                run.step = done
                _log(stats[:pending], run, last_checkpoint, e_neg is not None, began,
                     callbacks, bar)
                pending = 0
            if is_checkpoint:
                last_checkpoint = state.save(folder, done, energy, opt, scheduler, negatives,
                                             generator, history, keep_checkpoints)
                for cb in callbacks:
                    cb.on_checkpoint(run, last_checkpoint)
    except BaseException as err:
        distributed.report_failure(err, f"at step {step + 1}")  # names the rank; re-raised
        raise
    finally:
        if bar is not None:
            bar.close()
    run.step = max(start, num_steps)
    for cb in callbacks:
        cb.on_end(run)
    return history


def _check_arguments(
    energy: object,
    num_steps: int,
    batch_size: int,
    log_every: int,
    keep_checkpoints: int,
    generator: object,
    seed: object,
    clip_grad_norm: float | None,
) -> None:
    if not isinstance(energy, nn.Module):
        raise TypeError(f"energy must be a torch.nn.Module energy; got {type(energy).__name__}")
    check_positive_int(num_steps, "num_steps", minimum=0)
    check_positive_int(batch_size, "batch_size")
    check_positive_int(log_every, "log_every")
    check_positive_int(keep_checkpoints, "keep_checkpoints")
    check_generator(generator)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    if clip_grad_norm is not None:
        check_positive(clip_grad_norm, "clip_grad_norm")


def _needs_negatives(spec: LossSpec, reg: LossSpec | None, negatives: object) -> bool:
    """Check that the negatives fit the loss; return whether the loss uses them."""
    needs_negatives = spec.needs_negatives or (reg is not None and reg.needs_negatives)
    if needs_negatives and negatives is None:
        raise ValueError(
            f"loss {spec.name!r} needs negatives (inputs {spec.inputs}); pass negatives=, e.g. "
            "eb.training.negatives.Sampled(...)"
        )
    if negatives is not None and not callable(negatives):
        raise TypeError(f"negatives must be callable; got {type(negatives).__name__}")
    if spec.needs_noise_density and not hasattr(negatives, "log_prob"):
        raise ValueError(
            f"loss {spec.name!r} needs the noise log density: use negatives with a log_prob "
            "method (eb.training.negatives.Gaussian or Uniform)"
        )
    return needs_negatives


def _rank_rows(rows: int, rank: int, world: int) -> slice:
    """This rank's slice of a global batch of ``rows`` rows."""
    if rows % world:
        raise ValueError(
            f"batch_size must be a multiple of the number of processes {world} (each takes an "
            f"equal slice of the global batch); got a batch of {rows} rows"
        )
    return slice(*distributed.shard_range(rows, rank, world))


def _rank_generator(
    generator: torch.Generator | None, seed: int, rank: int, device: torch.device
) -> torch.Generator:
    """The random source of negatives and losses: per rank, rank 0's is the run's own."""
    if generator is None:
        return torch.Generator(device=device).manual_seed(distributed.derive_seed(seed, rank))
    if rank > 0:  # per-rank negatives: an explicit generator is re-seeded on ranks >= 1
        generator.manual_seed(distributed.derive_seed(generator.initial_seed(), rank))
    return generator


@dataclass(frozen=True)
class _Objective:
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
        e_neg = _flat_energy(model, y_neg, x_neg, event_ndim) if y_neg is not None else None
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


def _log(
    stats: Tensor, run: Run, last_checkpoint: Path | None, has_negatives: bool, began: float,
    callbacks: Sequence[Callback], bar: Any,
) -> None:
    """One logging point: read the statistics (mean over ranks), record, call back, show."""
    block = distributed.all_reduce_mean(stats)  # mean over ranks
    record = _flush(block, run.step, last_checkpoint, has_negatives)
    record["lr"] = float(run.optimizer.param_groups[0]["lr"])
    record["time"] = time.perf_counter() - began
    for cb in callbacks:
        record.update(cb.evaluate(run) or {})
    run.history.records.append(record)
    for cb in callbacks:
        cb.on_log(run, record)
    if bar is not None:
        bar.update(stats.shape[0])
        bar.set_postfix(loss=f"{record['loss']:.4g}", gap=f"{record['gap']:.4g}")


def _progress(progress: bool, total: int, initial: int, description: str) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True, leave=True)


def _flush(
    block: Tensor, done: int, last_checkpoint: Path | None, has_negatives: bool
) -> dict[str, float]:
    """Read the pending statistics once; raise on the first non-finite step."""
    values = block.tolist()  # the one synchronisation per logging interval
    first = done - len(values) + 1
    for i, (loss, e_pos, e_neg) in enumerate(values):
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
    e_neg = sum(v[2] for v in values) / n if has_negatives else math.nan
    return {"step": done, "loss": loss, "energy_pos": e_pos, "energy_neg": e_neg,
            "gap": e_neg - e_pos}
