r"""The records of a training run, shared by the loop and its callbacks, and the loss spec.

:class:`History` (what :func:`ebmlab.fit` recorded), :class:`Run` (the live state a callback
sees), :class:`DivergenceError`, and :func:`resolve_loss`, which reads from a loss's parameter
names the inputs the loop must supply (the vocabulary is ``eb.losses.INPUTS``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.losses import INPUTS, LOSSES

__all__ = ["History", "Run", "DivergenceError", "LossSpec", "resolve_loss"]

# Inputs of a loss that need negatives, and those that need their log density (NCE).
_NEGATIVE_INPUTS = {"e_neg", "e_min", "e_noise", "e_all"}
_NOISE_INPUTS = {"log_q_data", "log_q_noise"}
_KNOWN_INPUTS = set(INPUTS)


class DivergenceError(RuntimeError):
    """Training diverged and could not be recovered; the message names the step and the cause.

    Raised by :func:`ebmlab.fit` with ``on_divergence="raise"`` at the first divergence, and
    with ``"rollback"`` once the rollbacks are used up.

    Attributes:
        step: the (1-based) step whose loss, gradient, parameters or energy gap went wrong.
        checkpoint: the last good checkpoint (JSON path), or ``None``; a checkpoint holding
            non-finite tensors is never written, so this one is finite.
        history: the run's :class:`History` up to the divergence (rollbacks included), or
            ``None``.
    """

    def __init__(
        self, message: str, step: int, checkpoint: Path | None, history: History | None = None
    ) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint
        self.history = history


@dataclass
class History:
    """What :func:`fit` recorded: one record per logging point.

    Each record holds ``step`` (steps completed), ``loss``, ``energy_pos``, ``energy_neg`` and
    ``gap`` (= energy_neg − energy_pos; both left out where the loss uses no negatives, so the
    metrics CSV has no such columns), averaged over the steps since the previous record, plus
    ``lr`` and whatever evaluation callbacks add.

    A run that recovered from a divergence (``on_divergence="rollback"``) has one entry per
    rollback in :attr:`rollbacks`, and every record after the first carries the running count
    in the column ``rollbacks`` (so it reaches the metrics CSV).

    Attributes:
        records: the records, in step order (after a rollback, the rolled-back steps are
            replaced by the new attempt's).
        checkpoint: the JSON path of the last checkpoint written, if any.
        resumed_from: the step the run resumed from (0 for a fresh run).
        rollbacks: one dict per rollback: ``step`` (where the divergence was seen),
            ``restored`` (the step of the good state restored), ``reason``, ``lr`` (the new
            learning rate of the first parameter group).
    """

    records: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    resumed_from: int = 0
    rollbacks: list[dict[str, Any]] = field(default_factory=list)

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
