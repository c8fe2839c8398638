r"""Data-parallel training and sharded inference on ``torch.distributed`` (launched by torchrun).

Nothing here runs a home-made launcher: processes are started by ``torchrun`` (or any launcher
that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``), and
:func:`setup` joins the process group they describe. Without those variables every helper
behaves as a world of one process, so the same script runs unchanged with ``python`` and with
``torchrun --nproc_per_node N``.

Design (what :func:`ebmlab.fit` does with these helpers):

- Every rank draws the same *global* batch of ``batch_size`` rows (the batches are stateless in
  the run seed and the step) and keeps its contiguous slice :func:`shard_range`; the energy is
  wrapped in ``DistributedDataParallel``, which averages the gradients. For losses that are
  means over rows, W processes on B/W rows each therefore take the same optimiser step as one
  process on B rows (up to float rounding). ``batch_size`` must be a multiple of W.
- Negatives and replay buffers are per rank, drawn from a generator seeded with
  :func:`derive_seed` ``(seed, rank)``; rank 0 keeps the run seed, so a world of one is the
  ordinary single-process run.
- Logged statistics are averaged over ranks (one all-reduce per logging interval), so the
  divergence check reaches the same verdict on every rank.
- Checkpoints are written by rank 0 only, atomically, between two barriers; every rank's
  generator and replay buffer are gathered into it (:mod:`ebmlab.training.state`), and any
  world size can resume it (a rank missing from the checkpoint starts its negatives from rank
  0's buffer and a fresh generator).
- A worker whose torchrun agent dies (killed, not ended normally) notices within a second
  and exits (:func:`watch_launcher`) instead of training on as an orphan.
- A rank that raises prints ``rank r of W failed at step s`` with the cause and exits; its
  peers, blocked in the next collective, fail as well (torchrun then ends the job), and since
  the checkpoint is renamed into place only once complete, the last one stays valid.

Backends: ``nccl`` when CUDA is available and the tensors are on CUDA, else ``gloo``;
override with ``EBMLAB_BACKEND`` or ``setup(backend=...)``.
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ebmlab.training.watchdog import watch_launcher

__all__ = [
    "setup",
    "is_distributed",
    "rank",
    "world_size",
    "is_main",
    "choose_backend",
    "derive_seed",
    "shard_range",
    "barrier",
    "all_reduce_mean",
    "gather_rows",
    "wrap",
    "report_failure",
    "watch_launcher",
    "sharded_infer",
    "sharded_sample",
    "sharded_energy",
]

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_OWNED = False  # whether this module created the process group (and so destroys it at exit)


def choose_backend(device: torch.device | str | None = None) -> str:
    """Return ``"nccl"`` for CUDA tensors when CUDA and NCCL are available, else ``"gloo"``.

    ``EBMLAB_BACKEND`` in the environment overrides the choice.

    Example:
        >>> choose_backend("cpu")
        'gloo'
    """
    forced = os.environ.get("EBMLAB_BACKEND")
    if forced:
        return forced
    device = torch.device(device) if device is not None else None
    is_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    if is_cuda and torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def setup(
    backend: str | None = None,
    device: torch.device | str | None = None,
    timeout_s: float = 600.0,
) -> bool:
    """Join the process group described by torchrun's environment; return whether distributed.

    Does nothing (and returns ``False``) when the environment describes no group or a world of
    one; returns ``True`` when a group of two or more processes is (or already was) set up. With
    the ``nccl`` backend the current CUDA device is set to ``LOCAL_RANK``.

    Args:
        backend: ``"gloo"``, ``"nccl"`` or ``None`` for :func:`choose_backend` ``(device)``.
        device: the device the training tensors live on (chooses the backend).
        timeout_s: how long a collective may wait for a peer before failing.

    Raises:
        RuntimeError: torch was built without distributed support.
    """
    global _OWNED
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if not all(k in os.environ for k in _ENV) or int(os.environ["WORLD_SIZE"]) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend or choose_backend(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    _OWNED = True
    atexit.register(_teardown)
    watch_launcher(lambda: f"rank {rank()} of {world_size()}")
    return dist.get_world_size() > 1


def _teardown() -> None:
    if _OWNED and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Return whether a process group of two or more processes is set up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """Return this process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Return the number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Return whether this process is rank 0 (the one that writes files and shows progress)."""
    return rank() == 0


def derive_seed(seed: int, rank: int) -> int:
    """Return the seed of rank ``rank`` in a run seeded with ``seed``; rank 0 keeps ``seed``.

    Other ranks get a hash of ``(seed, rank)``, so their streams are unrelated to each other
    and to rank 0's, and the same on every launch.

    Example:
        >>> derive_seed(7, 0), derive_seed(7, 1) == derive_seed(7, 1), derive_seed(7, 1) != 7
        (7, True, True)
    """
    if rank == 0:
        return int(seed)
    digest = hashlib.sha256(f"ebmlab:{int(seed)}:{int(rank)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def shard_range(num: int, rank: int, world_size: int) -> tuple[int, int]:
    """Return the rows ``[start, stop)`` of rank ``rank`` when ``num`` rows are split in order.

    The first ``num % world_size`` ranks get one row more (as ``torch.tensor_split``).

    Example:
        >>> [shard_range(5, r, 2) for r in range(2)]
        [(0, 3), (3, 5)]
    """
    base, extra = divmod(int(num), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Return the mean of ``tensor`` over ranks (a new tensor; ``tensor`` itself if one rank)."""
    if not is_distributed():
        return tensor
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def _all_max(value: int, device: torch.device) -> int:
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather_rows(
    tensor: Tensor, num: int, *, pad_dims: Sequence[tuple[int, Any]] = ()
) -> Tensor:
    """Concatenate every rank's rows of a ``num``-row tensor split by :func:`shard_range`.

    Each rank passes its own shard; every rank receives the whole tensor, on the shard's
    device. ``pad_dims`` lists ``(dim, fill)`` pairs of dimensions (other than 0) whose size
    may differ between ranks: they are padded with ``fill`` to the largest size.

    Example:
        >>> gather_rows(torch.arange(3.0), 3).tolist()
        [0.0, 1.0, 2.0]
    """
    if not is_distributed():
        return tensor
    world, device = dist.get_world_size(), tensor.device
    for dim, fill in pad_dims:
        size = _all_max(tensor.shape[dim], device)
        if tensor.shape[dim] < size:
            shape = list(tensor.shape)
            shape[dim] = size - tensor.shape[dim]
            pad = torch.full(shape, fill, dtype=tensor.dtype, device=device)
            tensor = torch.cat((tensor, pad), dim=dim)
    sizes = [shard_range(num, r, world) for r in range(world)]
    most = max(stop - start for start, stop in sizes)
    local = tensor
    if local.shape[0] < most:  # all_gather needs equal shapes: pad rows, cut them after
        pad = torch.zeros((most - local.shape[0], *local.shape[1:]), dtype=local.dtype,
                          device=device)
        local = torch.cat((local, pad))
    is_bool = local.dtype == torch.bool
    if is_bool:  # not every backend reduces or gathers bool tensors
        local = local.to(torch.uint8)
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.contiguous())
    out = torch.cat([p[: stop - start] for p, (start, stop) in zip(parts, sizes, strict=True)])
    return out.bool() if is_bool else out


def wrap(energy: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``energy`` in ``DistributedDataParallel`` on ``device`` (itself if one process).

    Rank 0's parameters and buffers are broadcast to every rank, so all start equal.
    """
    if not is_distributed():
        return energy
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if (
        device.type == "cuda") else None
    return DistributedDataParallel(energy, device_ids=ids)


def report_failure(err: BaseException, where: str) -> None:
    """Print which rank failed, ``where`` and why, to stderr (nothing in a single process).

    The caller re-raises: the process exits, its peers fail in their next collective, and the
    launcher (torchrun) ends the job.
    """
    if not is_distributed():
        return
    print(
        f"ebmlab: rank {rank()} of {world_size()} failed {where}: {type(err).__name__}: {err}\n"
        "ebmlab: the run stops on every rank (a rank blocked in a collective then reports a "
        "lost peer; the first failure printed is the cause). Checkpoints are committed "
        "atomically, so the last one written is intact.",
        file=sys.stderr, flush=True,
    )


def _local_slice(num: int) -> slice:
    start, stop = shard_range(num, rank(), world_size())
    return slice(start, stop)


def sharded_infer(energy: nn.Module, x: Tensor, **infer_kwargs: Any) -> Any:
    """Run :func:`ebmlab.infer` on a batch of inputs split across ranks; gather the result.

    The starts of the whole batch are drawn once, on every rank, from the same generator
    (exactly as a single :func:`ebmlab.infer` call draws them), and each rank minimises its
    slice of the inputs. Every rank returns the full :class:`ebmlab.inference.Inference`
    (rows in input order, ``K`` padded to the largest count as ``infer`` pads), equal to the
    single-process result up to float rounding. Without a process group it is ``eb.infer``.

    Args:
        energy: an :class:`ebmlab.Energy` (a ``LatentEnergy`` is refused under torchrun).
        x: the inputs (B, *x_shape) on the device to compute on.
        **infer_kwargs: the keyword arguments of :func:`ebmlab.infer` (``init`` not allowed:
            the starts come from ``generator``; pass ``y_shape``/``domain`` as usual).

    Example:
        >>> import torch, ebmlab as eb
        >>> f = eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))
        >>> res = sharded_infer(f, torch.tensor([[4.0], [1.0]]), num_starts=8,
        ...                     generator=torch.Generator().manual_seed(0))
        >>> res.count.tolist()
        [2, 2]
    """
    from ebmlab.inference import infer
    from ebmlab.inference.multistart import starts
    from ebmlab.inference.problem import check_problem

    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor (B, *x_shape); got {type(x).__name__}")
    if "init" in infer_kwargs:
        raise ValueError("sharded_infer draws the starts itself; drop init= (use generator=)")
    if not is_distributed():
        return infer(energy, x, **infer_kwargs)
    from ebmlab.energy import LatentEnergy

    if isinstance(energy, LatentEnergy):
        raise TypeError(
            "sharded_infer takes an ebmlab.Energy; for a LatentEnergy the z starts cannot be "
            "drawn like a single process's: wrap it in eb.FreeEnergy, or call eb.infer"
        )
    domain = infer_kwargs.get("domain")
    generator = infer_kwargs.get("generator")
    p = check_problem(energy, x, y_shape=infer_kwargs.get("y_shape"), domain=domain,
                      num_starts=infer_kwargs.get("num_starts"), generator=generator)
    b, s, shape = p.b, p.s, p.shape
    y0 = starts(b, s, shape, domain, None, generator, p.dtype, p.device,
                float(infer_kwargs.get("init_scale", 1.0)))  # (B*S, *y_shape)
    y0 = y0.reshape(b, s, *shape)
    part = _local_slice(b)
    kwargs = {k: v for k, v in infer_kwargs.items() if k not in ("generator", "num_starts")}
    res = infer(energy, x[part], init=y0[part], num_starts=s, **kwargs)
    k_fill = [(1, 0)]
    out = {
        "y": gather_rows(res.y, b, pad_dims=k_fill),
        "energy": gather_rows(res.energy, b, pad_dims=[(1, float("inf"))]),
        "valid": gather_rows(res.valid, b, pad_dims=[(1, False)]),
        "count": gather_rows(res.count, b),
        "converged": gather_rows(res.converged, b, pad_dims=[(1, False)]),
        "num_unconverged": gather_rows(res.num_unconverged, b),
        "num_diverged": gather_rows(res.num_diverged, b),
    }
    # Padded slots repeat the best minimum, as infer pads them.
    k = out["y"].shape[1]
    best = out["y"][:, :1].expand_as(out["y"])
    is_pad = ~out["valid"].reshape(b, k, *([1] * len(shape)))
    out["y"] = torch.where(is_pad, best, out["y"])
    num_steps = _all_max(int(res.num_steps), x.device)
    trajectory = None
    if res.trajectory is not None:  # (T, B, S, ...): rows are dim 1
        trajectory = gather_rows(res.trajectory.transpose(0, 1), b).transpose(0, 1)
    return type(res)(**out, num_steps=num_steps, trajectory=trajectory)


def sharded_sample(
    energy: nn.Module,
    y0: Tensor,
    sampler: Any,
    num_steps: int,
    x: Tensor | None = None,
    *,
    seed: int,
    num_shards: int | None = None,
    **sample_kwargs: Any,
) -> Tensor:
    """Run :func:`ebmlab.sample` on chains split across ranks; return all samples (T, C, ...).

    The ``C`` chains of ``y0`` are cut into ``num_shards`` contiguous blocks (default: the
    world size); block ``j`` is sampled with a generator seeded ``derive_seed(seed, j)`` on
    the chains' device, and the blocks are spread over the ranks. The result therefore does not
    depend on the number of processes for a fixed ``num_shards``: it equals running
    ``eb.sample`` block by block in one process. (One ``eb.sample`` call over all chains draws
    the noise of all chains from one stream, which no split can reproduce; the law of the
    samples is the same.)

    Args:
        energy, y0, sampler, num_steps, x: as for :func:`ebmlab.sample`.
        seed: the seed the block generators derive from.
        num_shards: number of blocks; must be a multiple of the world size.
        **sample_kwargs: ``burn_in``, ``thin`` (no ``generator``).
    """
    from ebmlab.samplers import sample

    if "generator" in sample_kwargs:
        raise ValueError("sharded_sample seeds each block itself; pass seed= instead of generator=")
    world, me = world_size(), rank()
    num_shards = world if num_shards is None else int(num_shards)
    if num_shards < 1 or num_shards % world:
        raise ValueError(
            f"num_shards must be a positive multiple of the world size {world}; got {num_shards}"
        )
    c = y0.shape[0]
    pieces = []
    start, stop = shard_range(num_shards, me, world)
    for j in range(start, stop):
        lo, hi = shard_range(c, j, num_shards)
        g = torch.Generator(device=y0.device).manual_seed(derive_seed(seed, j))
        xj = None if x is None else x[lo:hi]
        pieces.append(sample(energy, y0[lo:hi], sampler, num_steps, xj, generator=g,
                             **sample_kwargs).samples)
    local = torch.cat(pieces, dim=1)  # (T, C_local, ...)
    if not is_distributed():
        return local
    # The chains of rank r's blocks are contiguous, rows shard_range over blocks.
    counts = []
    for r in range(world):
        b0, b1 = shard_range(num_shards, r, world)
        counts.append(shard_range(c, b1 - 1, num_shards)[1] - shard_range(c, b0, num_shards)[0])
    most = max(counts)
    t = local.transpose(0, 1)  # (C_local, T, ...)
    if t.shape[0] < most:
        t = torch.cat((t, t.new_zeros((most - t.shape[0], *t.shape[1:]))))
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)]).transpose(0, 1)


def sharded_energy(energy: nn.Module, y: Tensor, x: Tensor | None = None) -> Tensor:
    """Evaluate ``energy(y, x)`` (e.g. a :class:`ebmlab.FreeEnergy`) split across ranks.

    Every rank returns the (B,) energies of the whole batch, in order, on ``y``'s device.

    Example:
        >>> import torch, ebmlab as eb
        >>> q = eb.energies.Quadratic(torch.eye(1))
        >>> sharded_energy(q, torch.tensor([[1.0], [2.0]])).tolist()
        [0.5, 2.0]
    """
    b = y.shape[0]
    part = _local_slice(b)
    # No torch.no_grad: a free energy may minimise over z with autograd inside.
    e = energy(y[part], None if x is None else x[part]).detach()
    return gather_rows(e, b)
