"""Callbacks of ``eb.fit``: CSV logging (always), TensorBoard (if installed), evaluation."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebmlab._checks import check_positive_int
from ebmlab.training.checkpoint import atomic_write, write_error

if TYPE_CHECKING:
    from ebmlab.training.run import Run

__all__ = ["Callback", "CSVLogger", "TensorBoardLogger", "Evaluate"]


class Callback:
    """Base class of the hooks :func:`ebmlab.fit` calls; override the ones you need.

    Hooks run at logging points only (every ``log_every`` steps and at checkpoints), never
    inside the per-step hot path. A callback that draws random numbers must use its own
    generator, so that it does not change the training run.
    """

    def on_start(self, run: Run) -> None:
        """Called once before the first step (``run.is_resumed`` after a resume)."""

    def evaluate(self, run: Run) -> dict[str, float] | None:
        """Return extra metrics to add to the record of this logging point."""
        return None

    def on_log(self, run: Run, record: dict[str, float]) -> None:
        """Called with each new history record."""

    def on_checkpoint(self, run: Run, path: Path) -> None:
        """Called after a checkpoint is committed."""

    def on_end(self, run: Run) -> None:
        """Called once after the last step."""


def _cell(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


class CSVLogger(Callback):
    """Append every history record to a CSV file (``step, loss, energy_pos, ...``).

    The file is a view of the run's history: on start (and whenever a new column appears, from
    an evaluation that starts later) it is rewritten atomically from the history (temporary
    file, fsync, rename), then each record is appended as one row. A resumed run rebuilds it
    from the history restored from the checkpoint, so rows of the interrupted attempt after the
    resumed step are dropped and a truncated or damaged file (a kill in the middle of a write)
    never loses a row nor blocks the resume.

    Args:
        path: the CSV file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.columns: list[str] = []

    def on_start(self, run: Run) -> None:
        rows = [r for r in run.history.records if _step(r) <= run.step] if run.is_resumed else []
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        self.columns = columns
        buf = io.StringIO()
        if columns:
            writer = csv.DictWriter(buf, fieldnames=columns, restval="")
            writer.writeheader()
            for r in rows:
                writer.writerow({k: _cell(v) for k, v in r.items()})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(err, self.path) from err
        atomic_write(self.path, buf.getvalue().encode())

    def on_log(self, run: Run, record: dict[str, float]) -> None:
        if any(k not in self.columns for k in record):  # a new column: rewrite the header
            rows = [r for r in run.history.records if r is not record] + [record]
            self._rewrite(rows)
            return
        line = io.StringIO()
        csv.DictWriter(line, fieldnames=self.columns, restval="").writerow(
            {k: _cell(v) for k, v in record.items()}
        )
        try:
            with open(self.path, "a", newline="") as f:
                f.write(line.getvalue())
        except OSError as err:
            raise write_error(err, self.path) from err


def _step(record: dict[str, Any]) -> float:
    try:
        return float(record.get("step", math.inf))
    except (TypeError, ValueError):
        return math.inf


class TensorBoardLogger(Callback):
    """Write every scalar of each history record to TensorBoard.

    Needs ``tensorboard`` (``pip install tensorboard``); the error says so when it is missing.

    Args:
        log_dir: the TensorBoard run folder.

    Raises:
        ImportError: if TensorBoard is not installed.
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "TensorBoardLogger needs the tensorboard package: pip install tensorboard "
                "(metrics are always written as CSV by fit(checkpoint_dir=...) or CSVLogger)"
            ) from err
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_log(self, run: Run, record: dict[str, float]) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)

    def on_end(self, run: Run) -> None:
        self.writer.flush()


class Evaluate(Callback):
    """Add the metrics of ``fn(energy)`` to the history every ``every`` steps.

    Args:
        fn: returns a mapping name -> number, e.g. the test NLL; runs under ``torch.no_grad``
            unless ``grad=True``.
        every: steps between evaluations (a multiple of ``fit``'s ``log_every`` to land on a
            logging point).
        grad: let ``fn`` build autograd graphs (for gradient-based evaluations).

    Example:
        >>> import torch, ebmlab as eb
        >>> ev = eb.training.Evaluate(lambda f: {"e0": float(f(torch.zeros(1, 1)))}, every=10)
        >>> ev.every
        10
    """

    def __init__(
        self, fn: Callable[[Any], dict[str, float]], every: int = 1, *, grad: bool = False
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        self.fn = fn
        self.every = check_positive_int(every, "every")
        self.grad = bool(grad)

    def evaluate(self, run: Run) -> dict[str, float] | None:
        if run.step % self.every and run.step != run.num_steps:
            return None
        import torch

        was_training = run.energy.training
        run.energy.eval()
        try:
            with torch.set_grad_enabled(self.grad):
                out = self.fn(run.energy)
        finally:
            run.energy.train(was_training)
        return {k: float(v) for k, v in dict(out).items()}
