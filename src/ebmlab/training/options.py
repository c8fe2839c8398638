r"""``eb.fit``'s argument checks and defaults: the optimiser, regulariser, negatives and ranks.

What :func:`ebmlab.fit` resolves before its first step; the loop itself is in
:mod:`ebmlab.training.fit`, one step's loss and the logging points in
:mod:`ebmlab.training.step`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab._checks import check_generator, check_positive, check_positive_int
from ebmlab.losses import contrastive_divergence, energy_gap
from ebmlab.training import distributed
from ebmlab.training.callbacks import Callback
from ebmlab.training.divergence import ON_DIVERGENCE
from ebmlab.training.negatives import Gaussian, default_negatives
from ebmlab.training.run import LossSpec

__all__ = [
    "DEFAULT_REGULARIZER_WEIGHT",
    "default_regularizer",
    "check_arguments",
    "check_callbacks",
    "resolve_regularizer",
    "resolve_negatives",
    "check_negatives",
    "make_optimizer",
    "DEFAULT_LR",
    "default_scheduler",
    "rank_rows",
    "rank_generator",
]

DEFAULT_REGULARIZER_WEIGHT = 0.1
DEFAULT_LR = 3e-3  # the default Adam's learning rate, decayed to 0 over the run (cosine)


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


def check_arguments(
    energy: object,
    num_steps: int,
    batch_size: int,
    log_every: int,
    keep_checkpoints: int,
    generator: object,
    seed: object,
    clip_grad_norm: float | None,
    on_divergence: str,
    resume: object,
) -> None:
    """Check :func:`ebmlab.fit`'s plain arguments; raise naming the one that is wrong."""
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
    if on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"on_divergence must be one of {ON_DIVERGENCE}; got {on_divergence!r}")
    if resume not in (True, False, "force"):
        raise ValueError(f"resume must be True, False or 'force'; got {resume!r}")


def check_callbacks(callbacks: Sequence[object]) -> None:
    """Every callback is an :class:`ebmlab.training.Callback`."""
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be ebmlab.training.Callback; got {type(cb).__name__}")


def resolve_regularizer(
    regularizer: Callable[..., Tensor] | str | None, spec: LossSpec
) -> Callable[..., Tensor] | None:
    """``regularizer="default"``: :func:`default_regularizer` for CD, nothing otherwise."""
    if isinstance(regularizer, str):
        if regularizer != "default":
            raise ValueError(
                f"regularizer must be a callable, None or 'default'; got {regularizer!r}"
            )
        return default_regularizer if spec.fn is contrastive_divergence else None
    return regularizer


def resolve_negatives(spec: LossSpec, reg: LossSpec | None, negatives: Any, y: Tensor) -> Any:
    """The negatives: those given, or the default where the loss needs some (see ``fit``)."""
    if negatives is not None or not (
        spec.needs_negatives or (reg is not None and reg.needs_negatives)
    ):
        return negatives
    if spec.needs_noise_density:  # NCE: Gaussian noise covering the data, 16 per point
        flat = y.detach().reshape(y.shape[0], -1)
        mean = flat.mean(0).reshape(y.shape[1:])
        scale = float(flat.std(0).max()) * 1.5 if y.shape[0] > 1 else 1.0
        return Gaussian(scale if math.isfinite(scale) and scale > 0 else 1.0, mean=mean, num=16)
    return default_negatives(y)


def check_negatives(spec: LossSpec, reg: LossSpec | None, negatives: object) -> bool:
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


def make_optimizer(
    optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None,
    energy: nn.Module,
) -> torch.optim.Optimizer:
    """The optimiser: the one given, made by the factory given, or Adam with ``DEFAULT_LR``."""
    if optimizer is None:
        return torch.optim.Adam(energy.parameters(), lr=DEFAULT_LR)
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


def rank_rows(rows: int, rank: int, world: int) -> slice:
    """This rank's slice of a global batch of ``rows`` rows."""
    if rows % world:
        raise ValueError(
            f"batch_size must be a multiple of the number of processes {world} (each takes an "
            f"equal slice of the global batch); got a batch of {rows} rows"
        )
    return slice(*distributed.shard_range(rows, rank, world))


def rank_generator(
    generator: torch.Generator | None, seed: int, rank: int, device: torch.device
) -> torch.Generator:
    """The random source of negatives and losses: per rank, rank 0's is the run's own."""
    if generator is None:
        return torch.Generator(device=device).manual_seed(distributed.derive_seed(seed, rank))
    if rank > 0:  # per-rank negatives: an explicit generator is re-seeded on ranks >= 1
        generator.manual_seed(distributed.derive_seed(generator.initial_seed(), rank))
    return generator


def default_scheduler(optimizer: torch.optim.Optimizer, num_steps: int) -> Any:
    r"""The schedule of the default optimiser: cosine decay to 0 over ``num_steps`` steps.

    The learning rate of step :math:`s` is
    :math:`\mathrm{lr}\cdot\tfrac12\left(1 + \cos(\pi \min(s, T) / T)\right)`, T the call's
    ``num_steps`` (read when the call starts, so a run resumed with a larger ``num_steps``
    continues on the longer schedule). A ``LambdaLR``: its state (step, base rates) is
    checkpointed, the function is not.

    Example:
        >>> import torch
        >>> opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = default_scheduler(opt, 4)
        >>> for _ in range(2):
        ...     opt.step(); sched.step()
        >>> round(opt.param_groups[0]["lr"], 6)
        0.5
    """
    total = max(1, int(num_steps))

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
