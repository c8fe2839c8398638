r"""The training state in and out of a checkpoint, every rank's part included.

A checkpoint of :func:`ebmlab.fit` holds the energy's parameters and buffers, the optimiser and
scheduler, the negatives' replay buffer, rank 0's generator and the history under the ordinary
keys, plus, in a distributed run, every other rank's generator and buffer under
``ranks.<r>.``. This module is the only place that knows those keys: :func:`save` and
:func:`resume` are what the loop calls; the other functions are their parts.
"""

from __future__ import annotations

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
    "is_stateful",
    "save",
    "resume",
    "write",
    "restore",
    "scheduler_state",
    "gather_rank_states",
    "restore_rank_state",
]


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
) -> Path:
    """Gather the whole training state and write it as one checkpoint (the only writer)."""
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
    meta = {
        "optimizer": opt_meta,
        "scheduler": None if scheduler is None else scheduler_state(scheduler),
        "history": history.records,
        "energy": type(energy).__name__,
    }
    return write_checkpoint(folder, step, tensors, meta, keep=keep)


def restore(
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
    if is_stateful(negatives):
        prefix = "negatives."
        negatives.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
    restore_generator_states(tensors, {"generator": generator})
    history.records[:] = [dict(r) for r in meta["history"]]
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
) -> tuple[int, Path | None]:
    """Load the latest checkpoint of ``folder`` into the live objects, on every rank.

    Returns ``(start step, that checkpoint)``, or ``(0, None)`` when there is none.

    Raises:
        ValueError: the folder holds checkpoints and ``is_resume`` is false.
    """
    latest = latest_checkpoint(folder) if folder is not None else None
    if latest is None:
        return 0, None
    if not is_resume:
        raise ValueError(
            f"checkpoint_dir {folder} holds checkpoints of an earlier run (latest "
            f"{latest.name}); pass resume=True to continue it, or use an empty folder"
        )
    start = restore(latest, energy, optimizer, scheduler, negatives, generator, history)
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
) -> Path:
    """Write the checkpoint of ``step`` (rank 0) and return its path on every rank.

    A collective in a distributed run: every rank's state is gathered, rank 0 writes, and no
    rank moves on before the checkpoint is committed.
    """
    ranks = gather_rank_states(negatives, generator)  # collective
    path: Path | None = None
    if distributed.is_main():
        path = write(folder, step, energy, optimizer, scheduler, negatives, generator, history,
                     keep, ranks)
    distributed.barrier()  # the checkpoint is committed before any rank moves on
    if path is None:
        path = latest_checkpoint(folder)
    history.checkpoint = path
    return path
