r"""``eb.fit``: the training loop — progress, callbacks, divergence checks and exact resume."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab._checks import check_generator, check_positive, check_positive_int
from ebmlab.training import distributed
from ebmlab.training.batches import Batches, split_data
from ebmlab.training.callbacks import Callback, CSVLogger
from ebmlab.training.checkpoint import (
    CheckpointError,
    generator_states,
    latest_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    read_checkpoint,
    restore_generator_states,
    write_checkpoint,
)
from ebmlab.training.negatives import check_negatives_output

__all__ = ["fit", "History", "Run", "DivergenceError", "resolve_loss", "LossSpec"]

# Inputs a loss may name, beyond its own keyword options.
_ENERGY_INPUTS = {"e_pos", "e_data"}
_NEGATIVE_INPUTS = {"e_neg", "e_min", "e_noise", "e_all"}
_NOISE_INPUTS = {"log_q_data", "log_q_noise"}
_KNOWN_INPUTS = _ENERGY_INPUTS | _NEGATIVE_INPUTS | _NOISE_INPUTS | {"energy", "y", "x"}


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or energy; the message names the step.

    Attributes:
        step: the (1-based) step whose loss or energies were not finite.
        checkpoint: the last good checkpoint (JSON path), or ``None``.
    """

    def __init__(self, message: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class History:
    """What :func:`fit` recorded: one record per logging point.

    Each record holds ``step`` (steps completed), ``loss``, ``energy_pos``, ``energy_neg`` and
    ``gap`` (= energy_neg − energy_pos; NaN where the loss uses no negatives), averaged over the
    steps since the previous record, plus ``lr`` and whatever evaluation callbacks add.

    Attributes:
        records: the records, in step order.
        checkpoint: the JSON path of the last checkpoint written, if any.
        resumed_from: the step the run resumed from (0 for a fresh run).
    """

    records: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    resumed_from: int = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[float]:
        """Return the column ``key`` over all records (NaN where a record lacks it)."""
        if not any(key in r for r in self.records):
            raise KeyError(f"history has no column {key!r}; columns: {self.columns}")
        return [float(r.get(key, math.nan)) for r in self.records]

    @property
    def columns(self) -> list[str]:
        """The column names, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    @property
    def final_step(self) -> int:
        """The number of steps completed."""
        return int(self.records[-1]["step"]) if self.records else self.resumed_from


@dataclass
class Run:
    """The live state handed to callbacks."""

    energy: nn.Module
    optimizer: torch.optim.Optimizer
    step: int
    num_steps: int
    history: History
    checkpoint_dir: Path | None
    is_resumed: bool = False


@dataclass(frozen=True)
class LossSpec:
    """A loss resolved for the training loop: the function, its inputs and fixed options."""

    fn: Callable[..., Tensor]
    inputs: tuple[str, ...]
    options: Mapping[str, Any]
    name: str

    @property
    def needs_negatives(self) -> bool:
        """Whether the loss uses energies of negatives."""
        return bool(_NEGATIVE_INPUTS & set(self.inputs))

    @property
    def needs_noise_density(self) -> bool:
        """Whether the loss needs the negatives' log density (NCE)."""
        return bool(_NOISE_INPUTS & set(self.inputs))


def resolve_loss(
    loss: str | Callable[..., Tensor], options: Mapping[str, Any] | None = None
) -> LossSpec:
    """Resolve a loss name of ``eb.losses.LOSSES`` or a callable into a :class:`LossSpec`.

    A callable's inputs are read from its parameter names: ``e_pos``/``e_data`` (energies of
    the data), ``e_neg``/``e_min``/``e_noise``/``e_all`` (of the negatives),
    ``log_q_data``/``log_q_noise`` (the noise log density, for NCE), ``energy``, ``y``, ``x``,
    and ``generator``; other parameters must have defaults or be given in ``options``.

    Raises:
        ValueError: an unknown loss name, an unknown option, or a required parameter that is
            neither an input nor an option.
    """
    options = dict(options or {})
    if isinstance(loss, str):
        from ebmlab.losses import LOSSES

        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable; got {loss!r}")
        fn, name = LOSSES[loss], loss
    elif callable(loss):
        fn, name = loss, getattr(loss, "__name__", type(loss).__name__)
    else:
        raise TypeError(f"loss must be a name or a callable; got {type(loss).__name__}")
    params = inspect.signature(fn).parameters
    inputs = tuple(p for p in params if p in _KNOWN_INPUTS or p == "generator")
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key in options:
        if key in inputs:
            raise ValueError(f"loss option {key!r} is an input that fit() supplies itself")
        if key not in params and not accepts_any:
            allowed = sorted(set(params) - set(inputs))
            raise ValueError(f"loss {name!r} has no option {key!r}; options: {allowed}")
    for p in params.values():
        if (
            p.name not in inputs
            and p.name not in options
            and p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ):
            raise ValueError(f"loss {name!r} needs option {p.name!r}; pass it in loss_options")
    return LossSpec(fn, inputs, options, name)


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
            ``negatives(energy, y, x, generator=...)``; required by contrastive losses.
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
    if not isinstance(energy, nn.Module):
        raise TypeError(f"energy must be a torch.nn.Module energy; got {type(energy).__name__}")
    num_steps = check_positive_int(num_steps, "num_steps", minimum=0)
    check_positive_int(batch_size, "batch_size")
    log_every = check_positive_int(log_every, "log_every")
    check_positive_int(keep_checkpoints, "keep_checkpoints")
    check_generator(generator)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    if clip_grad_norm is not None:
        check_positive(clip_grad_norm, "clip_grad_norm")
    spec = resolve_loss(loss, loss_options)
    reg = resolve_loss(regularizer) if regularizer is not None else None
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
    rows = min(batches.num, batch_size)
    if rows % world:
        raise ValueError(
            f"batch_size must be a multiple of the number of processes {world} (each takes an "
            f"equal slice of the global batch); got a batch of {rows} rows"
        )
    part = slice(*distributed.shard_range(rows, rank, world))
    if generator is None:
        generator = torch.Generator(device=y_all.device).manual_seed(
            distributed.derive_seed(seed, rank))
    elif rank > 0:  # per-rank negatives: an explicit generator is re-seeded on ranks >= 1
        generator.manual_seed(distributed.derive_seed(generator.initial_seed(), rank))
    opt = _make_optimizer(optimizer, energy)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoint_every is None:
        checkpoint_every = max(1, num_steps // 10)
    check_positive_int(checkpoint_every, "checkpoint_every")
    callbacks = list(callbacks) if is_main else []  # callbacks and files: rank 0 only
    if folder is not None and is_main:
        callbacks.append(CSVLogger(folder / "metrics.csv"))

    history = History()
    start = 0
    last_checkpoint: Path | None = None
    if folder is not None:
        latest = latest_checkpoint(folder)
        if latest is not None and not resume:
            raise ValueError(
                f"checkpoint_dir {folder} holds checkpoints of an earlier run (latest "
                f"{latest.name}); pass resume=True to continue it, or use an empty folder"
            )
        if latest is not None:
            start = _restore(latest, energy, opt, scheduler, negatives, generator, history)
            if world > 1:
                distributed.restore_rank_state(read_checkpoint(latest)[1], negatives,
                                               generator, seed, start)
            last_checkpoint = latest
            history.resumed_from = start
    history.checkpoint = last_checkpoint

    def save(step: int) -> Path:
        ranks = distributed.gather_rank_states(negatives, generator)  # collective
        if is_main:
            path = _write(folder, step, energy, opt, scheduler, negatives, generator, history,
                          keep_checkpoints, ranks)
        distributed.barrier()  # the checkpoint is committed before any rank moves on
        if not is_main:
            path = latest_checkpoint(folder)
        history.checkpoint = path
        for cb in callbacks:
            cb.on_checkpoint(run, path)
        return path

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
            values: dict[str, Any] = {}
            y_neg = None
            if needs_negatives:
                y_neg = negatives(energy, y, x, generator=generator)
                if step == start:
                    check_negatives_output(y_neg, y)
            e_pos = model(y, x)
            e_neg = _flat_energy(model, y_neg, x, event_ndim) if y_neg is not None else None
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
                block = distributed.all_reduce_mean(stats[:pending])  # mean over ranks
                record = _flush(block, done, last_checkpoint, e_neg is not None)
                record["lr"] = float(opt.param_groups[0]["lr"])
                record["time"] = time.perf_counter() - began
                run.step = done
                for cb in callbacks:
                    record.update(cb.evaluate(run) or {})
                history.records.append(record)
                for cb in callbacks:
                    cb.on_log(run, record)
                if bar is not None:
                    bar.update(pending)
                    bar.set_postfix(loss=f"{record['loss']:.4g}", gap=f"{record['gap']:.4g}")
                pending = 0
            if is_checkpoint:
                last_checkpoint = save(done)
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


def _stateful(negatives: object) -> bool:
    return hasattr(negatives, "state_dict") and hasattr(negatives, "load_state_dict")


def _write(
    folder: Path,
    step: int,
    energy: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    negatives: object,
    generator: torch.Generator,
    history: History,
    keep: int,
    ranks: dict[str, Tensor] | None = None,
) -> Path:
    """Gather the whole training state and write it as one checkpoint (the only writer)."""
    tensors: dict[str, Tensor] = {}
    for name, t in energy.state_dict().items():
        tensors[f"model.{name}"] = t
    opt_tensors, opt_meta = optimizer_to_flat(optimizer.state_dict())
    tensors.update(opt_tensors)
    if _stateful(negatives):
        for name, t in negatives.state_dict().items():
            tensors[f"negatives.{name}"] = t
    tensors.update(generator_states({"generator": generator}))
    tensors.update(ranks or {})  # the other ranks' generators and buffers (distributed runs)
    meta = {
        "optimizer": opt_meta,
        "scheduler": None if scheduler is None else _scheduler_state(scheduler),
        "history": history.records,
        "energy": type(energy).__name__,
    }
    return write_checkpoint(folder, step, tensors, meta, keep=keep)


def _scheduler_state(scheduler: Any) -> dict[str, Any]:
    from ebmlab.training.checkpoint import _jsonable

    return _jsonable(scheduler.state_dict(), "scheduler state")  # type: ignore[return-value]


def _restore(
    path: Path,
    energy: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    negatives: object,
    generator: torch.Generator,
    history: History,
) -> int:
    """Load a checkpoint into the live objects; return its step."""
    step, tensors, meta = read_checkpoint(path)
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        energy.load_state_dict(model, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not fit this energy ({type(energy).__name__}; saved "
            f"from {meta.get('energy')}): {err}"
        ) from err
    optimizer.load_state_dict(optimizer_from_flat(tensors, meta["optimizer"],
                                                  optimizer.state_dict()))
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if _stateful(negatives):
        prefix = "negatives."
        negatives.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
    restore_generator_states(tensors, {"generator": generator})
    history.records[:] = [dict(r) for r in meta["history"]]
    return step

