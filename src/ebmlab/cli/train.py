"""``ebmlab train CONFIG``: train an energy from a TOML config; the run folder resumes.

The run folder gets the resolved config (``config.toml``, written atomically), the checkpoints,
``metrics.csv`` and the figures ``landscape_before.png`` / ``landscape_after.png`` (and
``tensorboard/`` with ``[logging] tensorboard = true``); running the same command again resumes
("resuming from step N" / "already complete" on stderr). The config's schema is
:mod:`ebmlab.cli.config`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ebmlab.cli._common import (
    add_device,
    add_threads,
    resolve_device,
    set_threads,
    write_text_atomic,
)
from ebmlab.cli.config import DTYPES, ConfigError, build, dump_toml, load_config, resolve_config
from ebmlab.training import distributed, lock
from ebmlab.training.checkpoint import list_checkpoints
from ebmlab.training.fit import fit
from ebmlab.training.run import DivergenceError

__all__ = ["HELP", "add_arguments", "run", "train"]

HELP = "train an energy from a TOML config (resumes if interrupted)"

log = logging.getLogger("ebmlab.cli")


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


def _saved_config(saved: Path, config: Mapping[str, Any], text: str, config_path: Path,
                  ) -> bool:
    """Check a run folder's ``config.toml`` against ``config``; return whether to (re)write it.

    The same config (whatever the spelling of ``output``) resumes. A damaged file (not TOML, not
    a valid config, or cut short: a prefix of the config as written) is rewritten with a
    warning: the checkpoints, not this file, hold the run. A different config is refused.
    """
    if not saved.is_file():
        return True
    old_text = saved.read_text(errors="replace")
    try:
        old = resolve_config(load_config(saved))
    except ConfigError:
        old = None
    if old is not None and {**old, "output": None} == {**config, "output": None}:
        return False
    if old is None or (old_text != text and dump_toml({**config, "output": old["output"]})
                       .startswith(old_text)):
        log.warning("%s is damaged or incomplete; rewriting it from %s (the checkpoints are "
                    "intact)", saved, config_path)
        return True
    changed = [k for k in sorted(set(old) | set(config))
               if k != "output" and old.get(k) != config.get(k)]
    raise ConfigError(
        f"{saved.parent} holds a run with a different config (differs in {changed}); give "
        "another --output folder, or delete the old run folder to start over"
    )


def _report_resume(run_dir: Path, num_steps: int) -> None:
    steps = list_checkpoints(run_dir) if run_dir.is_dir() else []
    if not steps:
        return
    if steps[-1] >= num_steps:
        log.info("%s is already complete (step %d of %d): nothing to train", run_dir,
                 steps[-1], num_steps)
    else:
        log.info("resuming %s from step %d of %d", run_dir, steps[-1], num_steps)


def _callbacks(config: Mapping[str, Any], run_dir: Path) -> list[Any]:
    if not config.get("logging", {}).get("tensorboard", False):
        return []
    from ebmlab.training.callbacks import TensorBoardLogger

    try:
        return [TensorBoardLogger(run_dir / "tensorboard")]
    except ImportError as err:
        raise ConfigError(
            "[logging] tensorboard = true needs the tensorboard package: "
            "pip install 'ebmlab[tensorboard]' (metrics.csv is always written)"
        ) from err


def _holding_run_folder(fn: Callable[..., Path]) -> Callable[..., Path]:
    """Hold the run folder's lock (:mod:`ebmlab.training.lock`) around all of ``train``."""

    @functools.wraps(fn)
    def wrapper(config_path: str | Path, *, output: str | Path | None = None,
                **kwargs: Any) -> Path:
        raw = load_config(config_path)
        if output is not None:
            raw["output"] = str(output)
        folder = resolve_config(raw)["output"]
        with lock.hold(folder if lock.is_writer() else None):  # one writer per run folder
            return fn(config_path, output=output, **kwargs)

    return wrapper


@_holding_run_folder
def train(config_path: str | Path, *, output: str | Path | None = None,
          progress: bool = True, device: torch.device | str = "cpu") -> Path:
    """Run ``ebmlab train``: validate, build, train (resuming), and write the run folder.

    Sets torch's default dtype to the config's ``dtype`` (as the run's tensors are made in it).
    A config refused before the first checkpoint leaves no run folder behind.
    """
    device = torch.device(device)
    distributed.setup(device=device)  # under torchrun: gloo on the CPU, nccl on GPUs
    is_main = distributed.is_main()  # rank 0 alone writes the run folder's files
    raw = load_config(config_path)
    if output is not None:
        raw["output"] = str(output)
    config = resolve_config(raw)
    run_dir = Path(config["output"])
    resolved_text = dump_toml(config)
    saved = run_dir / "config.toml"
    must_write = _saved_config(saved, config, resolved_text, Path(config_path))
    torch.set_default_dtype(DTYPES[config["dtype"]])
    built = build(config, device)
    if is_main:
        _report_resume(run_dir, config["num_steps"])
    is_new = not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} <= {lock.LOCK_NAME}
    distributed.barrier()  # every rank has read config.toml before rank 0 rewrites it
    try:
        callbacks = _callbacks(config, run_dir) if is_main else []
        if is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if must_write:
                write_text_atomic(saved, resolved_text)
            before = run_dir / "landscape_before.png"
            if not before.is_file():
                _plot_landscape(built["energy"], config, built, before, "before training")
        history = fit(
            built["energy"], built["data"], built["loss"], negatives=built["negatives"],
            optimizer=built["optimizer"], loss_options=built["loss_options"],
            regularizer=built["regularizer"], num_steps=config["num_steps"],
            batch_size=config["batch_size"], checkpoint_dir=run_dir, callbacks=callbacks,
            checkpoint_every=config["checkpoint_every"],
            keep_checkpoints=config["keep_checkpoints"],
            clip_grad_norm=config["clip_grad_norm"], seed=config["seed"],
            log_every=config["log_every"], progress=progress, description=run_dir.name,
        )
    except (ValueError, TypeError):
        # A refused config: leave no half-written run folder (only one this call created and
        # that holds no checkpoint).
        if is_main and is_new and run_dir.is_dir() and not list_checkpoints(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if is_main:
        _plot_landscape(built["energy"], config, built, run_dir / "landscape_after.png",
                        f"after {config['num_steps']} steps")
        if history.records:
            last = history.records[-1]
            shown = {k: v for k, v in last.items()
                     if k in ("loss", "energy_pos", "energy_neg", "gap")
                     and isinstance(v, float) and math.isfinite(v)}
            log.info("step %d: %s", int(last["step"]),
                     ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    return run_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``ebmlab train``."""
    p.add_argument("config", type=Path, help="TOML config (see examples/configs/)")
    p.add_argument("--output", type=Path, default=None, help="override the run folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_device(p)
    add_threads(p, None)


def run(args: argparse.Namespace) -> int:
    """Run ``ebmlab train``; return the exit code (1 when training diverged)."""
    device = resolve_device(args.device)
    set_threads(args, device)
    try:
        run_dir = train(args.config, output=args.output, progress=not args.no_progress,
                        device=device)
    except DivergenceError as err:
        print(f"ebmlab train: {err}", file=sys.stderr)
        return 1
    if not distributed.is_main():
        return 0
    print(f"run written to {run_dir}/ (config.toml, metrics.csv, checkpoints, figures)")
    return 0
