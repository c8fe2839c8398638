"""``ebmlab train CONFIG``: train an energy from a TOML config; the run folder resumes.

The run folder gets the resolved config (``config.toml``), the checkpoints, ``metrics.csv`` and
the figures ``landscape_before.png`` / ``landscape_after.png``; running the same command again
resumes. The config's schema is :mod:`ebmlab.cli.config`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ebmlab.cli._common import add_threads, set_threads
from ebmlab.cli.config import DTYPES, ConfigError, build, dump_toml, load_config, resolve_config
from ebmlab.training import distributed
from ebmlab.training.fit import fit
from ebmlab.training.run import DivergenceError

__all__ = ["HELP", "add_arguments", "run", "train"]

HELP = "train an energy from a TOML config (resumes if interrupted)"
THREADS_HELP = "torch CPU threads (default: torch's choice; 1 is best for small models)"


def _plot_landscape(energy: Any, config: Mapping[str, Any], built: Mapping[str, Any],
                    path: Path, title: str) -> None:
    """Draw F over the domain (2-D y), the (x, y) plane (1-D x and y) or a curve (1-D y)."""
    box = built["domain"]
    if box is None:
        return
    import ebmlab as eb  # eb.plot: matplotlib is imported only when drawing

    plot = config.get("plot", {})
    num = int(plot.get("num", 120))
    fig, (ax,) = eb.plot.subplots(title=title)
    x = built["x"]
    was = energy.training
    energy.eval()
    try:
        if x is not None and box.dim == 1 and x.shape[1:].numel() == 1:
            lo, hi = float(x.min()), float(x.max())
            eb.plot.conditional(energy, x_range=(lo, hi),
                                y_range=(float(box.low[0]), float(box.high[0])), num=num, ax=ax)
            ax.scatter(x[:300, 0].cpu(), built["y"][:300, 0].cpu(), s=3, c="white", alpha=0.5)
        else:
            x0 = None
            if x is not None:
                value = plot.get("x", x.mean(0).tolist())
                x0 = torch.as_tensor(value, dtype=x.dtype).reshape(1, *x.shape[1:])
            eb.plot.landscape(energy, x0, domain=box, num=num, ax=ax)
            if box.dim == 2 and x is None:
                pts = built["y"][:500].cpu()
                ax.scatter(pts[:, 0], pts[:, 1], s=3, c="white", alpha=0.5)
    finally:
        energy.train(was)
    eb.plot.save(fig, path)


def train(config_path: str | Path, *, output: str | Path | None = None,
          progress: bool = True) -> Path:
    """Run ``ebmlab train``: validate, build, train (resuming), and write the run folder.

    Sets torch's default dtype to the config's ``dtype`` (as the run's tensors are made in it).
    """
    distributed.setup(device="cpu")  # under torchrun (the CLI trains on the CPU: gloo)
    is_main = distributed.is_main()  # rank 0 alone writes the run folder's files
    raw = load_config(config_path)
    if output is not None:
        raw["output"] = str(output)
    config = resolve_config(raw)
    run_dir = Path(config["output"])
    resolved_text = dump_toml(config)
    saved = run_dir / "config.toml"
    if saved.is_file() and saved.read_text() != resolved_text:
        raise ConfigError(
            f"{run_dir} holds a run with a different config ({saved}); choose another output "
            "folder or delete the old run"
        )
    torch.set_default_dtype(DTYPES[config["dtype"]])
    built = build(config)
    distributed.barrier()  # every rank has read config.toml before rank 0 rewrites it
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(resolved_text)
        before = run_dir / "landscape_before.png"
        if not before.is_file():
            _plot_landscape(built["energy"], config, built, before, "before training")
    fit(
        built["energy"], built["data"], built["loss"], negatives=built["negatives"],
        optimizer=built["optimizer"], loss_options=built["loss_options"],
        regularizer=built["regularizer"], num_steps=config["num_steps"],
        batch_size=config["batch_size"], checkpoint_dir=run_dir,
        checkpoint_every=config["checkpoint_every"], keep_checkpoints=config["keep_checkpoints"],
        clip_grad_norm=config["clip_grad_norm"], seed=config["seed"],
        log_every=config["log_every"], progress=progress, description=run_dir.name,
    )
    if is_main:
        _plot_landscape(built["energy"], config, built, run_dir / "landscape_after.png",
                        f"after {config['num_steps']} steps")
    return run_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``ebmlab train``."""
    p.add_argument("config", type=Path, help="TOML config (see examples/configs/)")
    p.add_argument("--output", type=Path, default=None, help="override the run folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_threads(p, None, THREADS_HELP)


def run(args: argparse.Namespace) -> int:
    """Run ``ebmlab train``; return the exit code (1 when training diverged)."""
    set_threads(args)
    try:
        run_dir = train(args.config, output=args.output, progress=not args.no_progress)
    except DivergenceError as err:
        print(f"ebmlab train: {err}", file=sys.stderr)
        return 1
    if not distributed.is_main():
        return 0
    print(f"run written to {run_dir}/ (config.toml, metrics.csv, checkpoints, figures)")
    return 0
