r"""``eb.fit``: the training loop — progress, callbacks, divergence checks and exact resume.

The records it fills live in :mod:`ebmlab.training.run`, the checkpointed state in
:mod:`ebmlab.training.state`, the process group in :mod:`ebmlab.training.distributed`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab._checks import check_positive_int
from ebmlab.training import distributed, state
from ebmlab.training.batches import Batches, split_data
from ebmlab.training.callbacks import Callback, CSVLogger
from ebmlab.training.compiled_negatives import check_fit_compile
from ebmlab.training.divergence import (
    MAX_ENERGY_GAP,
    MAX_ROLLBACKS,
    ON_DIVERGENCE,
    ROLLBACK_LR_FACTOR,
    DivergenceGuard,
)
from ebmlab.training.lock import locks_checkpoint_dir
from ebmlab.training.options import (
    DEFAULT_REGULARIZER_WEIGHT,
    check_arguments,
    check_callbacks,
    check_negatives,
    default_regularizer,
    default_scheduler,
    make_optimizer,
    rank_generator,
    rank_rows,
    resolve_negatives,
    resolve_regularizer,
)
from ebmlab.training.run import DivergenceError, History, LossSpec, Run, resolve_loss
from ebmlab.training.step import Objective, log_point, progress_bar

# History, Run, DivergenceError, resolve_loss, LossSpec, default_regularizer and the constants
# are re-exported: they lived here (argument resolution is in options.py, the step in step.py).
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
    compile: bool | str = False,
) -> History:
    r"""Train ``energy`` on ``data`` by minimising a loss functional; return its :class:`History`.

    Each step draws a mini-batch (stateless in the step number), asks ``negatives`` for the
    offending answers, evaluates the loss, back-propagates, checks that the loss, the mean
    energies and the gradient are finite (one scalar read per step), clips and steps the
    optimiser. The other statistics stay on the device and are read every ``log_every``
    steps, when the progress bar (loss and energy gap), the callbacks and the rest of the
    divergence check (finite parameters, an energy gap below ``MAX_ENERGY_GAP`` = 1e4, no jump
    of the gradient norm) see them.

    **Defaults.** A loss that needs negatives and gets ``negatives=None`` uses
    :func:`ebmlab.training.negatives.default_negatives` (persistent Metropolis-adjusted
    Langevin chains from a replay buffer, 5 % restarted at training points, inside the data's
    bounding box, step set from the data's scale); NCE gets Gaussian noise fitted to the data
    (16 per point).
    ``contrastive_divergence`` gets :func:`default_regularizer` (``0.1 * energy_gap``) unless
    ``regularizer=None``. ``optimizer=None`` is Adam at lr 3e-3 with a cosine decay to 0 over
    ``num_steps`` (the endpoint of a constant rate swings by tenths of a nat, see
    docs/training.md).

    **Divergence.** A non-finite loss, energy or gradient (caught before the optimiser steps),
    non-finite parameters, an energy gap past ``MAX_ENERGY_GAP``, or an interval whose largest
    gradient norm is a new high past ``GRAD_NORM_JUMP`` = 100 times the median of the earlier
    intervals' (after 4 of them, counted from the start or the resume; the check that sees the
    losses without negatives, e.g. a recovery likelihood whose chains ran away): with
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
            ``None`` for Adam with lr 3e-3 (``DEFAULT_LR``) decayed to 0 over ``num_steps``
            by a cosine (``eb.training.options.default_scheduler``; ``scheduler`` replaces it).
        num_steps: total number of optimisation steps (including resumed ones).
        batch_size: rows per step (the whole data set when it is smaller).
        loss_options: fixed keyword options of the loss (``margin``, ``sigma``, ...).
        regularizer: a callable added to the loss, named like a loss (e.g.
            ``lambda e_pos, e_neg: 0.1 * eb.losses.energy_l2(e_pos, e_neg)``); ``"default"``
            for :func:`default_regularizer` with contrastive divergence and nothing otherwise;
            ``None`` for none.
        scheduler: an optional learning-rate scheduler, stepped once per step (with
            ``optimizer=None`` the default cosine decay is used).
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
        compile: ``True`` or ``"cuda-graph"``: the negatives' built-in Langevin steps run as
            one compiled block per step (:class:`ebmlab.training.negatives.Sampled`,
            ``docs/performance.md``); the loss and the optimiser stay eager. One
            ``UserWarning`` and eager training when the loss needs double backward (score
            matching, a gradient penalty) or the negatives have nothing to compile.

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
    check_arguments(energy, num_steps, batch_size, log_every, keep_checkpoints, generator,
                    seed, clip_grad_norm, on_divergence, resume)
    spec = resolve_loss(loss, loss_options)
    regularizer = resolve_regularizer(regularizer, spec)
    reg = resolve_loss(regularizer) if regularizer is not None else None
    check_callbacks(callbacks)
    y_all, x_all = split_data(data)
    negatives = resolve_negatives(spec, reg, negatives, y_all)
    check_fit_compile(compile, spec.name, None if reg is None else reg.name, negatives)
    objective = Objective(spec, reg, negatives, check_negatives(spec, reg, negatives))
    batches = Batches(y_all, x_all, batch_size, seed)
    # Under torchrun: every rank draws the same global batch and keeps its slice (see
    # ebmlab.training.distributed); a single process has rank 0 of 1 and is unchanged.
    distributed.setup(device=y_all.device)
    rank, world = distributed.rank(), distributed.world_size()
    is_main = rank == 0
    part = rank_rows(min(batches.num, batch_size), rank, world)
    generator = rank_generator(generator, seed, rank, y_all.device)
    opt = make_optimizer(optimizer, energy)
    if optimizer is None and scheduler is None:  # the default optimiser comes with its schedule
        scheduler = default_scheduler(opt, num_steps)
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
    bar = progress_bar(progress and is_main, num_steps, start, description)
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
                record = log_point(stats[:pending], run, last_checkpoint, e_neg is not None,
                                   began, callbacks, bar, guard)
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
