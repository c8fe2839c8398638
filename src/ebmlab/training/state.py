r"""The training state in and out of a checkpoint, every rank's part included.

A checkpoint of :func:`ebmlab.fit` holds the energy's parameters and buffers, the optimiser and
scheduler, the negatives' replay buffer, rank 0's generator and the history under the ordinary
keys, plus, in a distributed run, every other rank's generator and buffer under
``ranks.<r>.``. This module is the only place that knows those keys: :func:`save` and
:func:`resume` are what the loop calls; the other functions are their parts.

A checkpoint also stores the run's :func:`fingerprint` (its configuration); :func:`resume`
refuses a checkpoint whose fingerprint differs from the live run's, naming the fields.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ebmlab.training import distributed
from ebmlab.training.checkpoint import (
    CheckpointError,
    generator_states,
    latest_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    read_checkpoint,
    restore_generator_states,
    to_jsonable,
    write_checkpoint,
)
from ebmlab.training.run import History

__all__ = [
    "fingerprint",
    "fingerprint_differences",
    "is_stateful",
    "save",
    "resume",
    "write",
    "restore",
    "non_finite",
    "scheduler_state",
    "gather_rank_states",
    "restore_rank_state",
]


_log = logging.getLogger("ebmlab.training")


def _describe(value: object, depth: int = 0) -> object:
    """A JSON-storable, process-independent description of a configuration value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if isinstance(value, Tensor):
        t = value.detach()
        if t.numel() <= 16:
            return {"tensor": t.to("cpu", torch.float64).flatten().tolist()
                    if t.is_floating_point() else t.cpu().flatten().tolist(),
                    "shape": list(t.shape)}
        return {"shape": list(t.shape), "dtype": str(t.dtype), "sha256": _checksum(t)[:16]}
    if isinstance(value, (list, tuple)):
        return [_describe(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _describe(v, depth + 1) for k, v in value.items()}
    if callable(value) and hasattr(value, "__code__"):  # a function or lambda: name + code
        code = value.__code__
        consts = [c for c in code.co_consts if isinstance(c, (int, float, str, bool))]
        body = hashlib.sha256(code.co_code + repr(consts).encode()).hexdigest()[:12]
        return f"{getattr(value, '__qualname__', '?')}#{body}"
    if depth < 2 and hasattr(value, "__dict__"):
        fields = {k: _describe(v, depth + 1) for k, v in sorted(vars(value).items())
                  if not k.startswith("_") and _is_setting(v)}
        return {"class": type(value).__qualname__, **fields}
    return type(value).__qualname__


def _is_setting(value: object) -> bool:
    """Whether an attribute is a setting: not state (a replay buffer, a module, big tensors)."""
    if isinstance(value, Tensor):
        return value.numel() <= 16
    return not hasattr(value, "state_dict")


def _checksum(t: Tensor) -> str:
    data = t.detach().to("cpu").contiguous()
    if data.dtype == torch.bfloat16:
        data = data.float()
    return hashlib.sha256(data.numpy().tobytes()).hexdigest()


def fingerprint(
    energy: nn.Module,
    loss: object,
    loss_options: Mapping[str, Any] | None,
    regularizer: object,
    negatives: object,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    seed: int,
    y: Tensor,
    x: Tensor | None,
) -> dict[str, object]:
    """Describe a run's configuration as a flat dict of JSON values (stored in checkpoints).

    Fields: ``energy`` (class) and ``energy.shapes`` (every parameter and buffer's shape),
    ``loss``, ``loss_options``, ``regularizer``, ``negatives`` (class and settings: steps,
    step size, init, domain, ...), ``optimizer`` (class) and each hyper-parameter of its
    first parameter group (``lr``, ``betas``, ``weight_decay``, ...), ``batch_size``, ``seed``,
    ``data.shape`` and ``data.checksum`` (SHA-256 of ``y`` and ``x``). Functions are
    described by name and a hash of their code, so the same script gives the same
    fingerprint in every process.
    """
    fp: dict[str, object] = {
        "energy": type(energy).__qualname__,
        "energy.shapes": {k: list(v.shape) for k, v in energy.state_dict().items()},
        "loss": _describe(loss),
        "loss_options": _describe(dict(loss_options or {})),
        "regularizer": _describe(regularizer),
        "negatives": _describe(negatives),
        "optimizer": type(optimizer).__qualname__,
    }
    groups = optimizer.param_groups
    for key, value in (groups[0] if groups else {}).items():
        if key not in ("params", "initial_lr"):
            fp[key] = _describe(value)  # lr, betas, weight_decay, momentum, ...
    fp["batch_size"] = int(batch_size)
    fp["seed"] = int(seed)
    fp["data.shape"] = [list(y.shape), None if x is None else list(x.shape)]
    digest = hashlib.sha256(_checksum(y).encode())
    if x is not None:
        digest.update(_checksum(x).encode())
    fp["data.checksum"] = digest.hexdigest()[:16]
    return fp


def fingerprint_differences(
    saved: Mapping[str, object], live: Mapping[str, object]
) -> list[str]:
    """Return ``"field (checkpoint A, now B)"`` for every field whose value differs."""
    out = []
    for key in list(saved) + [k for k in live if k not in saved]:
        a, b = saved.get(key, "<absent>"), live.get(key, "<absent>")
        if a != b:
            if key in ("data.checksum", "energy.shapes", "negatives", "regularizer", "loss"):
                out.append(f"{key} (checkpoint {_short(a)}, now {_short(b)})")
            else:
                out.append(f"{key} (checkpoint {a!r}, now {b!r})")
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_stateful(negatives: object) -> bool:
    """Whether a negative source carries state to checkpoint (``state_dict``/``load_state_dict``).

    Example:
        >>> import ebmlab as eb
        >>> is_stateful(eb.training.negatives.Shuffled()), is_stateful(None)
        (False, False)
    """
    return hasattr(negatives, "state_dict") and hasattr(negatives, "load_state_dict")


def scheduler_state(scheduler: Any) -> dict[str, Any]:
    """Return a learning-rate scheduler's state as JSON-storable values."""
    return to_jsonable(scheduler.state_dict(), "scheduler state")  # type: ignore[return-value]


def write(
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
    fingerprint: Mapping[str, object] | None = None,
) -> Path:
    """Gather the whole training state and write it as one checkpoint (the only writer).

    Raises:
        CheckpointError: a floating tensor of the state is not finite (such a checkpoint is
            never written: the last one on disk stays the last good one).
    """
    tensors: dict[str, Tensor] = {}
    for name, t in energy.state_dict().items():
        tensors[f"model.{name}"] = t
    opt_tensors, opt_meta = optimizer_to_flat(optimizer.state_dict())
    tensors.update(opt_tensors)
    if is_stateful(negatives):
        for name, t in negatives.state_dict().items():
            tensors[f"negatives.{name}"] = t
    tensors.update(generator_states({"generator": generator}))
    tensors.update(ranks or {})  # the other ranks' generators and buffers (distributed runs)
    bad = non_finite(tensors)
    if bad:
        raise CheckpointError(
            f"refusing to write the checkpoint of step {step} to {folder}: tensors "
            f"{', '.join(bad[:5])} hold NaN or infinite values"
        )
    meta = {
        "optimizer": opt_meta,
        "optimizer_class": type(optimizer).__qualname__,
        "scheduler": None if scheduler is None else scheduler_state(scheduler),
        "history": history.records,
        "rollbacks": to_jsonable(history.rollbacks, "history rollbacks"),
        "energy": type(energy).__name__,
        "fingerprint": None if fingerprint is None else dict(fingerprint),
    }
    return write_checkpoint(folder, step, tensors, meta, keep=keep)


def non_finite(tensors: Mapping[str, Tensor]) -> list[str]:
    """Return the names of the floating tensors that hold a NaN or an infinity."""
    return [k for k, t in tensors.items()
            if t.is_floating_point() and not k.startswith("rng.") and not bool(t.isfinite().all())]


def restore(
    path: Path,
    energy: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    negatives: object,
    generator: torch.Generator,
    history: History,
    *,
    load_optimizer: bool = True,
) -> int:
    """Load a checkpoint into the live objects; return its step.

    With ``load_optimizer=False`` the optimiser keeps its fresh state (a forced resume with
    another optimiser class).

    Raises:
        CheckpointError: the checkpoint does not fit the energy or the optimiser.
    """
    step, tensors, meta = read_checkpoint(path)
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        energy.load_state_dict(model, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not fit this energy ({type(energy).__name__}; saved "
            f"from {meta.get('energy')}): {err}"
        ) from err
    if load_optimizer:
        saved = meta.get("optimizer_class")
        try:
            optimizer.load_state_dict(optimizer_from_flat(tensors, meta["optimizer"],
                                                          optimizer.state_dict()))
        except (KeyError, ValueError, RuntimeError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {path} holds the state of another optimiser ({saved or 'unknown'}"
                f"; this run uses {type(optimizer).__qualname__}): {err!r}. Use the run's "
                "optimiser, or resume='force' to continue with a fresh optimiser state"
            ) from err
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if is_stateful(negatives):
        prefix = "negatives."
        negatives.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
    restore_generator_states(tensors, {"generator": generator})
    history.records[:] = [dict(r) for r in meta["history"]]
    history.rollbacks[:] = [dict(r) for r in meta.get("rollbacks") or []]
    return step


def gather_rank_states(negatives: object, generator: torch.Generator) -> dict[str, Tensor]:
    """Collect every rank's generator state and replay buffer for rank 0's checkpoint.

    A collective: every rank must call it. Returns ``{"ranks.<r>.generator": ...,
    "ranks.<r>.negatives.<name>": ...}`` for the ranks ``r ≥ 1`` on rank 0 (copied to the host,
    as the checkpoint stores them) and ``{}`` elsewhere or in a single process; rank 0's own
    state is saved under the ordinary keys by :func:`write`.
    """
    if not distributed.is_distributed():
        return {}
    mine: dict[str, Tensor] = {"generator": generator.get_state()}
    if is_stateful(negatives):
        for name, t in negatives.state_dict().items():
            mine[f"negatives.{name}"] = t.detach().to("cpu")  # checkpoint copy, host side
    gathered: list[Any] | None = [None] * distributed.world_size() if distributed.is_main() \
        else None
    dist.gather_object(mine, gathered, dst=0)
    if gathered is None:
        return {}
    return {f"ranks.{r}.{k}": v for r, state in enumerate(gathered) if r > 0
            for k, v in state.items()}


def restore_rank_state(
    tensors: dict[str, Tensor], negatives: object, generator: torch.Generator, seed: int,
    step: int,
) -> None:
    """Give rank ``r ≥ 1`` its own generator and replay buffer from a checkpoint's tensors.

    A rank the checkpoint has no state for (it was written by fewer processes) keeps rank 0's
    replay buffer, already loaded, and reseeds its generator from ``(seed, rank, step)``.
    """
    me = distributed.rank()
    if me == 0:
        return
    prefix = f"ranks.{me}."
    key = f"{prefix}generator"
    if key in tensors:
        generator.set_state(tensors[key])
    else:
        generator.manual_seed(distributed.derive_seed(int(seed) * 1_000_003 + int(step), me))
    neg = {k[len(prefix) + len("negatives."):]: v for k, v in tensors.items()
           if k.startswith(prefix + "negatives.")}
    if neg and is_stateful(negatives):
        negatives.load_state_dict(neg)


def resume(
    folder: Path | None,
    is_resume: bool,
    energy: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    negatives: object,
    generator: torch.Generator,
    history: History,
    seed: int,
    fingerprint: Mapping[str, object] | None = None,
    num_steps: int | None = None,
) -> tuple[int, Path | None]:
    """Load the latest checkpoint of ``folder`` into the live objects, on every rank.

    ``is_resume`` is ``True``, ``False`` or ``"force"``. The checkpoint's fingerprint must equal
    ``fingerprint`` (the live run's configuration) unless ``is_resume == "force"``, which
    logs the differences as a warning and continues (with a fresh optimiser state if the
    optimiser class changed). Logs (``logging``, logger ``ebmlab.training``) the step it
    resumes from, or that the run is already complete.

    Returns ``(start step, that checkpoint)``, or ``(0, None)`` when there is none.

    Raises:
        ValueError: the folder holds checkpoints and ``is_resume`` is false, or their
            configuration differs from this run's (the message names the fields).
    """
    latest = latest_checkpoint(folder) if folder is not None else None
    if latest is None:
        return 0, None
    if not is_resume:
        raise ValueError(
            f"checkpoint_dir {folder} holds checkpoints of an earlier run (latest "
            f"{latest.name}); pass resume=True to continue it, or use an empty folder"
        )
    _, _, meta = read_checkpoint(latest)
    saved = meta.get("fingerprint")
    load_optimizer = True
    if saved is not None and fingerprint is not None:
        diff = fingerprint_differences(saved, to_jsonable(dict(fingerprint), "fingerprint"))
        if diff and is_resume != "force":
            raise ValueError(
                f"checkpoint_dir {folder} holds a run with another configuration: "
                f"{'; '.join(diff)}. Use another checkpoint_dir for a new run, or "
                "resume='force' to continue this one with the new settings"
            )
        if diff:
            _log.warning("resume='force': continuing %s despite a changed configuration: %s",
                         latest, "; ".join(diff))
            load_optimizer = saved.get("optimizer") == fingerprint.get("optimizer")
    start = restore(latest, energy, optimizer, scheduler, negatives, generator, history,
                    load_optimizer=load_optimizer)
    if num_steps is not None and start >= num_steps:
        _log.warning("run in %s already complete at step %d (num_steps=%d): nothing to train",
                     folder, start, num_steps)
    else:
        _log.info("resuming from step %d of %s (checkpoint %s)", start,
                  "?" if num_steps is None else num_steps, latest.name)
    if distributed.world_size() > 1:
        restore_rank_state(read_checkpoint(latest)[1], negatives, generator, seed, start)
    history.resumed_from = start
    return start, latest


def save(
    folder: Path,
    step: int,
    energy: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    negatives: object,
    generator: torch.Generator,
    history: History,
    keep: int,
    fingerprint: Mapping[str, object] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` (rank 0) and return its path on every rank.

    A collective in a distributed run: every rank's state is gathered, rank 0 writes, and no
    rank moves on before the checkpoint is committed.
    """
    ranks = gather_rank_states(negatives, generator)  # collective
    path: Path | None = None
    if distributed.is_main():
        path = write(folder, step, energy, optimizer, scheduler, negatives, generator, history,
                     keep, ranks, fingerprint)
    distributed.barrier()  # the checkpoint is committed before any rank moves on
    if path is None:
        path = latest_checkpoint(folder)
    history.checkpoint = path
    return path
