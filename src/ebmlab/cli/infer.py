"""``ebmlab infer RUN``: print (and plot) the minima of a trained run's energy.

``--plot`` alone writes ``RUN/minima.png``; a bare file name (``--plot m.png``) is written inside
the run folder too; a path with a folder (``--plot figs/m.png``) is used as given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ebmlab.cli._common import add_device, add_threads, resolve_device, set_threads
from ebmlab.cli.config import load_run
from ebmlab.training import distributed

__all__ = ["HELP", "add_arguments", "run", "infer_run", "plot_path"]

HELP = "print or plot the minima of a trained run's energy"


def _parse_x(values: list[str] | None, x_dim: int, dtype: torch.dtype) -> torch.Tensor | None:
    if not x_dim:
        if values:
            raise ValueError("this run's energy is unconditional; drop --x")
        return None
    if not values:
        raise ValueError(f"this run's energy is conditional: give --x with {x_dim} number(s)")
    rows = []
    for v in values:
        try:
            row = [float(t) for t in v.replace(",", " ").split()]
        except ValueError as err:
            raise ValueError(f"--x {v!r} is not a list of numbers") from err
        if len(row) != x_dim:
            raise ValueError(f"--x {v!r} has {len(row)} number(s); expected {x_dim}")
        rows.append(row)
    return torch.tensor(rows, dtype=dtype)


def plot_path(run: str | Path, plot: str | Path | None) -> Path | None:
    """Where ``--plot`` writes: inside the run folder unless the path names a folder.

    Example:
        >>> plot_path("runs/a", "m.png").as_posix(), plot_path("runs/a", "out/m.png").as_posix()
        ('runs/a/m.png', 'out/m.png')
    """
    if plot is None:
        return None
    plot = Path(plot)
    if plot.parent == Path(".") and not plot.is_absolute():
        return Path(run) / plot
    return plot


def infer_run(run: str | Path, x_values: list[str] | None = None, *, num_starts: int = 32,
              plot: str | Path | None = None, seed: int = 0, is_distributed: bool = False,
              device: torch.device | str = "cpu") -> str:
    """Run ``ebmlab infer``: the minima of a trained run's energy; returns the printed table.

    Sets torch's default dtype to the run's ``dtype`` (:func:`ebmlab.cli.config.load_run`).

    With ``is_distributed`` (under torchrun) the inputs are split across the processes by
    :func:`ebmlab.training.distributed.sharded_infer`; the result equals one process's.
    """
    import ebmlab as eb  # eb.plot: matplotlib is imported only when drawing

    device = torch.device(device)
    infer = eb.infer
    if is_distributed:
        distributed.setup(device=device)
        infer = distributed.sharded_infer if x_values else eb.infer
    config, built = load_run(run, device)
    energy, box = built["energy"], built["domain"]
    x_dim = built["x_dim"]
    x = _parse_x(x_values, x_dim, torch.get_default_dtype())
    if x is not None:
        x = x.to(device)
    shape = tuple(built["y"].shape[1:])
    result = infer(energy, x, y_shape=shape, num_starts=num_starts, domain=box,
                      generator=torch.Generator().manual_seed(seed))
    lines = []
    for b in range(result.y.shape[0]):
        head = "unconditional" if x is None else f"x = {x[b].tolist()}"
        lines.append(f"{head}: {int(result.count[b])} minima")
        for k in range(int(result.count[b])):
            y_k = [round(v, 4) for v in result.y[b, k].reshape(-1).tolist()]
            lines.append(f"  y = {y_k}  F = {float(result.energy[b, k]):.5g}")
    plot = plot_path(run, plot)
    if plot is not None and distributed.is_main():
        if box is None:
            raise ValueError("--plot needs a [domain] table in the run's config")
        fig, (ax,) = eb.plot.subplots(title=f"minima of {Path(run).name}")
        if x is not None and x.shape[1] == 1 and box.dim == 1:
            # Scalar x and y: the (x, y) plane with each input's minima marked.
            xs = built["x"][:, 0].cpu()
            eb.plot.conditional(energy, x_range=(float(xs.min()), float(xs.max())),
                                y_range=(float(box.low[0]), float(box.high[0])), ax=ax)
            for b in range(x.shape[0]):
                ys = result.minima(b).reshape(-1).cpu()
                ax.scatter([float(x[b, 0])] * len(ys), ys, marker="*", s=150, c="red",
                           edgecolors="black", zorder=5)
        else:
            x0 = None if x is None else x[:1]
            eb.plot.landscape(energy, x0, domain=box, ax=ax)
            eb.plot.modes(result, 0, ax=ax, trajectories=False)
        eb.plot.save(fig, plot)
        lines.append(f"figure written to {plot}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``ebmlab infer``."""
    p.add_argument("run", type=Path, help="a run folder written by ebmlab train")
    p.add_argument("--x", action="append", default=None,
                   help="an input, e.g. --x 0.5 or --x '0.1,0.2' (repeatable)")
    p.add_argument("--num-starts", type=int, default=32, help="multi-start count")
    p.add_argument("--plot", type=Path, nargs="?", const=Path("minima.png"), default=None,
                   help="write a PNG of the minima (default RUN/minima.png; a bare file name "
                   "goes inside the run folder)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starts")
    p.add_argument("--distributed", action="store_true",
                   help="split the inputs across the processes of torchrun (rank 0 prints)")
    add_device(p)
    add_threads(p, None)


def run(args: argparse.Namespace) -> int:
    """Run ``ebmlab infer``; return the exit code."""
    device = resolve_device(args.device)
    set_threads(args, device)
    table = infer_run(args.run, args.x, num_starts=args.num_starts, plot=args.plot,
                      seed=args.seed, is_distributed=args.distributed, device=device)
    if distributed.is_main():
        print(table)
    return 0
