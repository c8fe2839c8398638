r"""``eb.fit``: the training loop — progress, callbacks, divergence checks and exact resume.

The records it fills live in :mod:`ebmlab.training.run`, the checkpointed state in
:mod:`ebmlab.training.state`, the process group in :mod:`ebmlab.training.distributed`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab._checks import check_generator, check_positive, check_positive_int
from ebmlab.energy import check_energy_output
from ebmlab.losses import contrastive_divergence, energy_gap
from ebmlab.training import distributed, state
from ebmlab.training.batches import Batches, split_data
from ebmlab.training.callbacks import Callback, CSVLogger
from ebmlab.training.divergence import (
    MAX_ENERGY_GAP,
    MAX_ROLLBACKS,
    ON_DIVERGENCE,
    ROLLBACK_LR_FACTOR,
    DivergenceGuard,
)
from ebmlab.training.lock import locks_checkpoint_dir
from ebmlab.training.negatives import Gaussian, check_negatives_output, default_negatives
from ebmlab.training.run import DivergenceError, History, LossSpec, Run, resolve_loss

# History, Run, DivergenceError, resolve_loss and LossSpec are re-exported: they lived here.
__all__ = [
    "fit",
    "History",
    "Run",
    "DivergenceError",
    "resolve_loss",
    "LossSpec",
    "default_regularizer",
    "ON_DIVERGENCE",
    "MAX_ROLLBACKS",
    "ROLLBACK_LR_FACTOR",
    "MAX_ENERGY_GAP",
    "DEFAULT_REGULARIZER_WEIGHT",
]

_logger = logging.getLogger("ebmlab.training")

DEFAULT_REGULARIZER_WEIGHT = 0.1


def default_regularizer(e_pos: Tensor, e_neg: Tensor) -> Tensor:
    r"""The regulariser contrastive divergence gets by default: :math:`0.1\,\mathrm{gap}^2`.

    ``0.1 * eb.losses.energy_gap(e_pos, e_neg)``, the squared difference of the mean
    energies of negatives and data: the CD gradient is scaled by :math:`1 - 0.2\,\mathrm{gap}`,
    so the gap cannot run away past 5 nats, and at CD's fixed point (gap 0) it pulls nothing
    (``energy_l2`` would widen the modes, see docs/training.md). Pass ``regularizer=None``
    to :func:`fit` to train without it.

    Example:
        >>> import torch
        >>> round(default_regularizer(torch.tensor([1.0]), torch.tensor([-2.0])).item(), 6)
        0.9
    """
    if not distributed.is_distributed():
        return DEFAULT_REGULARIZER_WEIGHT * energy_gap(e_pos, e_neg)
    # Under torchrun the gap is a statistic of the global batch: with G the all-reduced gap
    # (detached), 2 G * gap_r has the gradient 2 G grad(gap_r), which DDP averages into
    # 2 G grad(G) = grad(G^2): the step of one process on the whole batch; the value is G^2.
    gap = e_neg.mean() - e_pos.mean()
    g = distributed.all_reduce_mean(gap.detach())
    return DEFAULT_REGULARIZER_WEIGHT * (g.square() + 2 * g * (gap - gap.detach()))


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
    regularizer: Callable[..., Tensor] | str | None = "default",
    scheduler: Any = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    resume: bool | str = True,
    on_divergence: str = "rollback",
    clip_grad_norm: float | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
    log_every: int = 50,
    progress: bool = True,
    description: str = "fit",
) -> History:
    r"""Train ``energy`` on ``data`` by minimising a loss functional; return its :class:`History`.

    Each step draws a mini-batch (stateless in the step number), asks ``negatives`` for the
    offending answers, evaluates the loss, back-propagates, checks that the loss, the mean
    energies and the gradient are finite (one scalar read per step), clips and steps the
    optimiser. The other statistics stay on the device and are read every ``log_every``
    steps, when the progress bar (loss and energy gap), the callbacks and the rest of the
    divergence check (finite parameters, an energy gap below ``MAX_ENERGY_GAP`` = 1e4) see
    them.

    **Defaults.** A loss that needs negatives and gets ``negatives=None`` uses
    :func:`ebmlab.training.negatives.default_negatives` (persistent Langevin chains from a
    replay buffer, 5 % restarted inside the data's bounding box, step set from the data's
    scale); NCE gets Gaussian noise fitted to the data (16 per point).
    ``contrastive_divergence`` gets :func:`default_regularizer` (``0.1 * energy_gap``) unless
    ``regularizer=None``.

    **Divergence.** A non-finite loss, energy or gradient (caught before the optimiser steps),
    non-finite parameters or an energy gap past ``MAX_ENERGY_GAP``: with
    ``on_divergence="rollback"`` (default) the last good state (kept in memory at every
    logging point: parameters, optimiser, scheduler, replay buffer, random states, history) is
    restored, the negatives are reseeded (a fresh generator seed, replay buffer refilled) and
    the learning rate is multiplied by ``ROLLBACK_LR_FACTOR`` = 0.5 (compounded when the same
    state is restored again), and training continues; each rollback is recorded in
    ``History.rollbacks`` and in the records' ``rollbacks`` column (so in the metrics CSV).
    After ``MAX_ROLLBACKS`` = 5 rollbacks in a row (without getting past the step that
    diverged) it raises :class:`DivergenceError` with the history.
    ``"raise"`` raises at the first divergence; ``"ignore"`` skips steps whose loss or
    gradient is not finite (the optimiser does not step) and checks nothing else. A checkpoint
    holding non-finite tensors is never written.

    **Checkpoints** hold the energy's parameters and buffers, the optimiser and scheduler, the
    negatives' replay buffer, every random state (``generator``, torch's global RNGs), the
    history and a fingerprint of the run's configuration (energy class and shapes, loss and
    options, regulariser, negatives and their settings, optimiser class and hyper-parameters,
    batch size, seed, data shape and checksum); they are written atomically (see
    :mod:`ebmlab.training.checkpoint`). With ``resume=True`` a run continues from the latest
    checkpoint in ``checkpoint_dir`` if its fingerprint matches (else ``ValueError`` naming
    the fields that differ; ``resume="force"`` continues anyway) and ends bit-identical on CPU
    to a run that was never interrupted (same thread count). Resuming is logged (logger
    ``ebmlab.training``). A metrics CSV is written to ``checkpoint_dir/metrics.csv``.

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
            ``negatives(energy, y, x, generator=...)``, or ``None`` for the default above. A
            source with ``is_marginal = True`` samples the marginal: it gets ``x=None`` and its
            negatives are scored as ``energy(y_neg)`` (JEM, ``eb.training.images``).
        optimizer: a ``torch.optim.Optimizer``, a factory ``params -> Optimizer``, or
            ``None`` for Adam with lr 1e-3.
        num_steps: total number of optimisation steps (including resumed ones).
        batch_size: rows per step (the whole data set when it is smaller).
        loss_options: fixed keyword options of the loss (``margin``, ``sigma``, ...).
        regularizer: a callable added to the loss, named like a loss (e.g.
            ``lambda e_pos, e_neg: 0.1 * eb.losses.energy_l2(e_pos, e_neg)``); ``"default"``
            for :func:`default_regularizer` with contrastive divergence and nothing otherwise;
            ``None`` for none.
        scheduler: an optional learning-rate scheduler, stepped once per step.
        callbacks: :class:`ebmlab.training.Callback` objects (logging, evaluation).
        checkpoint_dir: folder of checkpoints and metrics; ``None`` for none.
        checkpoint_every: steps between checkpoints (default: a tenth of ``num_steps``); one
            is always written at the end.
        keep_checkpoints: how many recent checkpoints to keep.
        resume: ``True``: continue from the latest checkpoint in ``checkpoint_dir`` if there
            is one and its configuration matches; ``False``: a folder that holds checkpoints
            is refused; ``"force"``: continue even if the configuration changed (logged; a
            changed optimiser class starts from a fresh optimiser state).
        on_divergence: ``"rollback"``, ``"raise"`` or ``"ignore"`` (see above).
        clip_grad_norm: clip the gradient's global norm to this value.
        seed: seeds the batches and, without ``generator``, the negatives and the loss.
        generator: the random source of negatives and stochastic losses (its state is
            checkpointed); by default one seeded with ``seed`` on the data's device.
        log_every: steps between statistics reads (progress bar, callbacks, divergence check,
            in-memory good state for rollbacks).
        progress: show a tqdm progress bar (loss, energy gap, rollbacks).
        description: the progress bar's label.

    Returns:
        The :class:`History`.

    Raises:
        DivergenceError: training diverged (``on_divergence="raise"``) or kept diverging
            after ``MAX_ROLLBACKS`` rollbacks in a row; names the step, the cause and the last good
            checkpoint, and carries the history.
        ValueError, TypeError: bad arguments, a checkpoint that fails its checks, or one of a
            run with another configuration.

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
        ...               regularizer=None, num_steps=200, progress=False)
        >>> round(float(model.mean.detach()), 1)
        2.0
    """
    _check_arguments(energy, num_steps, batch_size, log_every, keep_checkpoints, generator,
                     seed, clip_grad_norm)
    if on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"on_divergence must be one of {ON_DIVERGENCE}; got {on_divergence!r}")
    if resume not in (True, False, "force"):
        raise ValueError(f"resume must be True, False or 'force'; got {resume!r}")
    spec = resolve_loss(loss, loss_options)
    regularizer = _default_regularizer(spec) if _is_default(regularizer) else regularizer
    reg = resolve_loss(regularizer) if regularizer is not None else None
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be ebmlab.training.Callback; got {type(cb).__name__}")
    y_all, x_all = split_data(data)
    if negatives is None and (spec.needs_negatives or (reg is not None and reg.needs_negatives)):
        negatives = _default_negatives(spec, y_all)
    objective = _Objective(spec, reg, negatives, _needs_negatives(spec, reg, negatives))
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
    fingerprint = (
        state.fingerprint(energy, loss, loss_options, regularizer, negatives, opt, batch_size,
                          seed, y_all, x_all)
        if folder is not None else None
    )
    start, last_checkpoint = state.resume(folder, resume, energy, opt, scheduler, negatives,
                                          generator, history, seed, fingerprint, num_steps)
    history.checkpoint = last_checkpoint
    run = Run(energy, opt, start, num_steps, history, folder, is_resumed=start > 0)
    for cb in callbacks:
        cb.on_start(run)

    event_ndim = y_all.ndim - 1
    params = [p for p in energy.parameters() if p.requires_grad]
    guard = DivergenceGuard(on_divergence, energy, opt, scheduler, negatives, generator,
                            history, seed, rank, world)
    guard.keep(start)
    stats: Tensor | None = None  # (log_every, 3) per-step statistics, read once per interval
    nan: Tensor | None = None
    bar = _progress(progress and is_main, num_steps, start, description)
    model = distributed.wrap(energy, y_all.device)  # DistributedDataParallel under torchrun
    step = start
    pending = 0  # steps whose statistics are still in `stats`
    began = time.perf_counter()
    energy.train()
    try:
        while step < num_steps:
            y, x = batches(step)
            if world > 1:
                y, x = y[part], None if x is None else x[part]
            value, e_pos, e_neg = objective(model, energy, y, x, generator, event_ndim,
                                            is_first=step == start)
            opt.zero_grad(set_to_none=True)
            value.backward()
            if stats is None:
                stats = torch.zeros(log_every, 3, dtype=value.dtype, device=value.device)
                nan = torch.full((), math.nan, dtype=value.dtype, device=value.device)
            e_pos_mean = e_pos.detach().mean()
            e_neg_mean = nan if e_neg is None else e_neg.detach().mean()
            row = stats[pending]
            torch.stack((value.detach(), e_pos_mean, e_neg_mean), out=row)
            done = step + 1
            if not guard.is_finite_step(row, params, e_neg is not None):
                # caught before the optimiser steps: the parameters are still the good ones
                if on_divergence == "ignore":
                    guard.skipped += 1
                else:
                    step, pending = guard.diverged(done, "a non-finite loss, energy or "
                                                   "gradient", last_checkpoint, bar), 0
                    continue
            else:
                if clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
                opt.step()
                if scheduler is not None:
                    scheduler.step()
            pending += 1
            is_checkpoint = folder is not None and (
                done % checkpoint_every == 0 or done == num_steps
            )
            if pending == log_every or is_checkpoint or done == num_steps:
                run.step = done
                record = _log(stats[:pending], run, last_checkpoint, e_neg is not None, began,
                              callbacks, bar, guard)
                pending = 0
                reason = guard.check_interval(record, params)
                if reason is not None:
                    step = guard.diverged(done, reason, last_checkpoint, bar)
                    continue
                guard.keep(done)
                if is_checkpoint:
                    last_checkpoint = state.save(folder, done, energy, opt, scheduler,
                                                 negatives, generator, history,
                                                 keep_checkpoints, fingerprint)
                    for cb in callbacks:
                        cb.on_checkpoint(run, last_checkpoint)
            step = done
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


def _is_default(regularizer: object) -> bool:
    if isinstance(regularizer, str):
        if regularizer != "default":
            raise ValueError(
                f"regularizer must be a callable, None or 'default'; got {regularizer!r}"
            )
        return True
    return False


def _default_regularizer(spec: LossSpec) -> Callable[..., Tensor] | None:
    """``regularizer="default"``: :func:`default_regularizer` for CD, nothing otherwise."""
    return default_regularizer if spec.fn is contrastive_divergence else None


def _default_negatives(spec: LossSpec, y: Tensor) -> Any:
    """``negatives=None`` with a loss that needs negatives: see :func:`fit`."""
    if spec.needs_noise_density:  # NCE: Gaussian noise covering the data, 16 per point
        flat = y.detach().reshape(y.shape[0], -1)
        mean = flat.mean(0).reshape(y.shape[1:])
        scale = float(flat.std(0).max()) * 1.5 if y.shape[0] > 1 else 1.0
        return Gaussian(scale if math.isfinite(scale) and scale > 0 else 1.0, mean=mean, num=16)
    return default_negatives(y)


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
        if is_first:  # once per run: an energy of shape (B, 1) would broadcast in the loss
            check_energy_output(e_pos, y.shape[0], f"energy {type(energy).__name__}")
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
    callbacks: Sequence[Callback], bar: Any, guard: DivergenceGuard,
) -> dict[str, float]:
    """One logging point: read the statistics (mean over ranks), record, call back, show."""
    block = distributed.all_reduce_mean(stats)  # mean over ranks
    record = _flush(block, run.step, last_checkpoint, has_negatives, strict=guard.checks)
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


def _progress(progress: bool, total: int, initial: int, description: str) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, dynamic_ncols=True, leave=True)


def _flush(
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
