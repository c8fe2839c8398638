"""``ebmlab train CONFIG`` and ``ebmlab infer RUN``: config-driven training and inference.

A config is a TOML file with top-level settings and one table per component::

    seed = 0
    num_steps = 500
    batch_size = 256
    output = "runs/eight_gaussians"

    [energy]      # name = "mlp" | "quadratic" | "ellipse" | "horn", plus its options
    [data]        # name = one of eb.data's generators, num, seed, plus its options
    [loss]        # name = one of eb.losses.LOSSES, plus its options
    [regularizer] # optional: name = "energy_l2", weight
    [negatives]   # name = "sampled" | "most_offending" | "uniform" | "gaussian" | "shuffled"
    [optimizer]   # name = "adam" | "adamw" | "sgd" | "rmsprop", plus its options
    [domain]      # low, high: the box for plots, noise and inference
    [plot]        # optional: num (grid points per axis), x (the input drawn)

Unknown keys and bad values are refused with the table and key named. The run folder gets
the resolved config (``config.toml``), the checkpoints, ``metrics.csv`` and the figures
``landscape_before.png`` / ``landscape_after.png``; running the same command again resumes.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ebmlab.cli import COMMANDS

__all__ = ["load_config", "resolve_config", "build", "train", "dump_toml", "ConfigError"]


class ConfigError(ValueError):
    """A training config has an unknown key or a bad value."""


_TOP: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "seed": (int, 0),
    "num_steps": (int, 1000),
    "batch_size": (int, 256),
    "output": (str, None),
    "log_every": (int, 50),
    "checkpoint_every": (int, None),
    "keep_checkpoints": (int, 2),
    "clip_grad_norm": ((int, float), None),
    "dtype": (str, "float32"),
}
_TABLES = ("energy", "data", "loss", "regularizer", "negatives", "optimizer", "domain", "plot")
_REQUIRED_TABLES = ("energy", "data", "loss")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _data_registry() -> dict[str, Callable[..., Any]]:
    import ebmlab.data as data

    return {name: getattr(data, name) for name in (
        "eight_gaussians", "rings", "checkerboard", "two_moons", "multimodal_1d",
        "two_branch", "ellipse", "horn",
    ) if hasattr(data, name)}


def _optimizers() -> dict[str, type]:
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
            "rmsprop": torch.optim.RMSprop}


def _check_options(table: str, name: str, fn: Callable[..., Any], options: Mapping[str, Any],
                   supplied: set[str]) -> None:
    """Refuse options that ``fn`` does not take (``supplied`` ones are filled in by us)."""
    params = inspect.signature(fn).parameters
    allowed = sorted(p for p in params if p not in supplied and p != "self"
                     and params[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                inspect.Parameter.VAR_KEYWORD))
    for key in options:
        if key not in allowed:
            raise ConfigError(f"[{table}] {name!r} has no option {key!r}; options: {allowed}")


def _call(table: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"[{table}] bad value: {err}") from err


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file (no validation; see :func:`resolve_config`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a config and fill in the defaults; return the resolved config.

    Raises:
        ConfigError: an unknown key or table, a missing table, or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in _TABLES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a table [{key}]; got {type(value).__name__}")
            continue
        if key not in _TOP:
            raise ConfigError(
                f"unknown key {key!r} in config; allowed keys: {sorted(_TOP)} and tables "
                f"{list(_TABLES)}"
            )
        kind, _ = _TOP[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"{key} must be {kind}; got {value!r}")
        out[key] = value
    for key, (_, default) in _TOP.items():
        out.setdefault(key, default)
    if out["output"] is None:
        raise ConfigError("config needs output = \"runs/NAME\" (the run folder)")
    if out["dtype"] not in _DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(_DTYPES)}; got {out['dtype']!r}")
    for key in ("num_steps", "batch_size", "log_every", "keep_checkpoints"):
        if out[key] < 1:
            raise ConfigError(f"{key} must be >= 1; got {out[key]}")
    for table in _REQUIRED_TABLES:
        if table not in config:
            raise ConfigError(f"config needs a [{table}] table")
    for table in _TABLES:
        if table in config:
            out[table] = dict(config[table])
            if table not in ("domain", "plot") and "name" not in out[table]:
                raise ConfigError(f"[{table}] needs name = ...")
    out.setdefault("optimizer", {"name": "adam", "lr": 1e-3})
    domain = out.get("domain")
    if domain is not None:
        unknown = set(domain) - {"low", "high"}
        if unknown or not {"low", "high"} <= set(domain):
            raise ConfigError(f"[domain] needs exactly low and high; got keys {sorted(domain)}")
    plot = out.get("plot", {})
    unknown = set(plot) - {"num", "x"}
    if unknown:
        raise ConfigError(f"[plot] has unknown keys {sorted(unknown)}; allowed: ['num', 'x']")
    return out


def _box(config: Mapping[str, Any]) -> Any:
    import ebmlab as eb

    if "domain" not in config:
        return None
    return _call("domain", eb.Box, config["domain"]["low"], config["domain"]["high"])


def _build_data(spec: Mapping[str, Any], seed: int) -> Any:
    registry = _data_registry()
    options = dict(spec)
    name = options.pop("name")
    if name not in registry:
        raise ConfigError(f"[data] name must be one of {sorted(registry)}; got {name!r}")
    data_seed = options.pop("seed", seed + 1)
    _check_options("data", name, registry[name], options, {"generator", "dtype", "device"})
    g = torch.Generator().manual_seed(int(data_seed))
    return _call("data", registry[name], **options, generator=g)


def _build_energy(spec: Mapping[str, Any], y_dim: int, x_dim: int) -> torch.nn.Module:
    import ebmlab as eb

    options = dict(spec)
    name = options.pop("name")
    if name == "mlp":
        _check_options("energy", name, eb.energies.MLPEnergy, options, {"y_dim", "x_dim"})
        if "hidden" in options:
            options["hidden"] = tuple(options["hidden"])
        return _call("energy", eb.energies.MLPEnergy, y_dim, x_dim, **options)
    if name == "quadratic":
        allowed = {"scale"}
        if set(options) - allowed or x_dim:
            raise ConfigError(
                f"[energy] 'quadratic' is unconditional and takes only {sorted(allowed)}; got "
                f"{sorted(options)}"
            )
        scale = _call("energy", float, options.get("scale", 1.0))
        return eb.energies.Quadratic(torch.eye(y_dim) * scale)
    if name in ("ellipse", "horn"):
        allowed = {"beta", "num_z"} | ({"w"} if name == "ellipse" else {"hidden"})
        unknown = set(options) - allowed
        if unknown:
            raise ConfigError(f"[energy] {name!r} has no option {sorted(unknown)[0]!r}; "
                              f"options: {sorted(allowed)}")
        beta = options.get("beta", math.inf)
        num_z = options.get("num_z", 48)
        grid = _call("energy", eb.latent.Grid, 0.0, 2 * math.pi, num_z, periodic=True)
        if name == "ellipse":
            latent = _call("energy", eb.energies.Ellipse, options.get("w", (1.0, 1.0)))
        else:
            latent = _call("energy", eb.energies.Horn, tuple(options.get("hidden", (8, 8))))
        return _call("energy", eb.FreeEnergy, latent, grid, beta=beta)
    raise ConfigError(
        f"[energy] name must be one of ['ellipse', 'horn', 'mlp', 'quadratic']; got {name!r}"
    )


def _build_negatives(spec: Mapping[str, Any] | None, box: Any) -> Any:
    if spec is None:
        return None
    import ebmlab as eb
    from ebmlab.training.negatives import NEGATIVES

    options = dict(spec)
    name = options.pop("name")
    if name not in NEGATIVES:
        raise ConfigError(f"[negatives] name must be one of {sorted(NEGATIVES)}; got {name!r}")
    cls = NEGATIVES[name]
    params = inspect.signature(cls).parameters
    _check_options("negatives", name, cls, options, {"domain", "buffer"})
    if "domain" in params:
        if box is None and name == "uniform":
            raise ConfigError("[negatives] 'uniform' needs a [domain] table")
        if box is not None:
            options["domain"] = box
    if isinstance(options.get("sampler"), str):
        kernels = eb.samplers.KERNELS
        kernel = options["sampler"]
        if kernel not in kernels:
            raise ConfigError(
                f"[negatives] sampler must be one of {sorted(kernels)}; got {kernel!r}"
            )
        options["sampler"] = _call("negatives", kernels[kernel], options.get("step_size", 0.01),
                                   domain=box)
    return _call("negatives", cls, **options)


def _build_optimizer(spec: Mapping[str, Any], params: Any) -> torch.optim.Optimizer:
    registry = _optimizers()
    options = dict(spec)
    name = options.pop("name")
    if name not in registry:
        raise ConfigError(f"[optimizer] name must be one of {sorted(registry)}; got {name!r}")
    _check_options("optimizer", name, registry[name], options, {"params"})
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return _call("optimizer", registry[name], params, **options)


def _build_regularizer(spec: Mapping[str, Any] | None) -> Callable[..., Any] | None:
    if spec is None:
        return None
    import ebmlab as eb

    options = dict(spec)
    name = options.pop("name")
    weight = options.pop("weight", 1.0)
    if name != "energy_l2" or options:
        raise ConfigError(
            f"[regularizer] supports name = 'energy_l2' with option weight; got {dict(spec)}"
        )
    weight = _call("regularizer", float, weight)

    def energy_l2(e_pos: torch.Tensor, e_neg: torch.Tensor | None = None) -> torch.Tensor:
        return weight * eb.losses.energy_l2(e_pos, e_neg)

    return energy_l2


def build(config: Mapping[str, Any]) -> dict[str, Any]:
    """Build every object a resolved config describes (energy, data, loss, negatives, ...)."""
    from ebmlab.training.batches import split_data
    from ebmlab.training.fit import resolve_loss

    torch.set_default_dtype(_DTYPES[config["dtype"]])
    data = _build_data(config["data"], config["seed"])
    y, x = split_data(data)
    y_dim = int(math.prod(y.shape[1:]))
    x_dim = 0 if x is None else int(math.prod(x.shape[1:]))
    torch.manual_seed(config["seed"])  # the energy's initialisation
    energy = _build_energy(config["energy"], y_dim, x_dim)
    loss_options = dict(config["loss"])
    loss_name = loss_options.pop("name")
    try:
        resolve_loss(loss_name, loss_options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"[loss] {err}") from err
    box = _box(config)
    return {
        "data": data, "energy": energy, "loss": loss_name, "loss_options": loss_options,
        "negatives": _build_negatives(config.get("negatives"), box), "domain": box,
        "optimizer": _build_optimizer(config["optimizer"], energy.parameters()),
        "regularizer": _build_regularizer(config.get("regularizer")),
        "x": x, "y": y,
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(config: Mapping[str, Any]) -> str:
    """Write a config of scalars, lists and one level of tables as TOML text."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items()
             if not isinstance(v, Mapping) and v is not None]
    for k, v in config.items():
        if isinstance(v, Mapping):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _plot_landscape(energy: Any, config: Mapping[str, Any], built: Mapping[str, Any],
                    path: Path, title: str) -> None:
    """Draw F over the domain (2-D y), the (x, y) plane (1-D x and y) or a curve (1-D y)."""
    box = built["domain"]
    if box is None:
        return
    import ebmlab as eb

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
    """Run ``ebmlab train``: validate, build, train (resuming), and write the run folder."""
    import ebmlab as eb
    from ebmlab.training import distributed

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
    built = build(config)
    distributed.barrier()  # every rank has read config.toml before rank 0 rewrites it
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(resolved_text)
        before = run_dir / "landscape_before.png"
        if not before.is_file():
            _plot_landscape(built["energy"], config, built, before, "before training")
    eb.fit(
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


def load_run(run: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rebuild a trained run: returns ``(config, built)`` with the energy's trained weights."""
    from ebmlab.training.checkpoint import read_checkpoint

    run = Path(run)
    if not (run / "config.toml").is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no config.toml)")
    config = resolve_config(load_config(run / "config.toml"))
    built = build(config)
    _, tensors, _ = read_checkpoint(run)
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    built["energy"].load_state_dict(state)
    built["energy"].eval()
    return config, built


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


def infer_run(run: str | Path, x_values: list[str] | None = None, *, num_starts: int = 32,
              plot: str | Path | None = None, seed: int = 0, is_distributed: bool = False) -> str:
    """Run ``ebmlab infer``: the minima of a trained run's energy; returns the printed table.

    With ``is_distributed`` (under torchrun) the inputs are split across the processes by
    :func:`ebmlab.training.distributed.sharded_infer`; the result equals one process's.
    """
    import ebmlab as eb
    from ebmlab.training import distributed

    infer = eb.infer
    if is_distributed:
        distributed.setup(device="cpu")
        infer = distributed.sharded_infer if x_values else eb.infer
    config, built = load_run(run)
    energy, box = built["energy"], built["domain"]
    x_dim = 0 if built["x"] is None else int(math.prod(built["x"].shape[1:]))
    x = _parse_x(x_values, x_dim, torch.get_default_dtype())
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
    if plot is not None and distributed.is_main():
        if box is None:
            raise ValueError("--plot needs a [domain] table in the run's config")
        fig, (ax,) = eb.plot.subplots(title=f"minima of {Path(run).name}")
        if x is not None and x.shape[1] == 1 and box.dim == 1:
            # Scalar x and y: the (x, y) plane with each input's minima marked.
            xs = built["x"][:, 0]
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


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="TOML config (see examples/configs/)")
    p.add_argument("--output", type=Path, default=None, help="override the run folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_threads(p)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is best for small models)")


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1; got {args.threads}")
        torch.set_num_threads(args.threads)


def _run_train(args: argparse.Namespace) -> int:
    from ebmlab.training import distributed
    from ebmlab.training.fit import DivergenceError

    _set_threads(args)
    try:
        run_dir = train(args.config, output=args.output, progress=not args.no_progress)
    except DivergenceError as err:
        print(f"ebmlab train: {err}", file=sys.stderr)
        return 1
    if not distributed.is_main():
        return 0
    print(f"run written to {run_dir}/ (config.toml, metrics.csv, checkpoints, figures)")
    return 0


def _add_infer(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, help="a run folder written by ebmlab train")
    p.add_argument("--x", action="append", default=None,
                   help="an input, e.g. --x 0.5 or --x '0.1,0.2' (repeatable)")
    p.add_argument("--num-starts", type=int, default=32, help="multi-start count")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of the minima")
    p.add_argument("--seed", type=int, default=0, help="seed of the starts")
    p.add_argument("--distributed", action="store_true",
                   help="split the inputs across the processes of torchrun (rank 0 prints)")
    _add_threads(p)


def _run_infer(args: argparse.Namespace) -> int:
    from ebmlab.training import distributed

    _set_threads(args)
    table = infer_run(args.run, args.x, num_starts=args.num_starts, plot=args.plot,
                      seed=args.seed, is_distributed=args.distributed)
    if distributed.is_main():
        print(table)
    return 0


COMMANDS["train"] = ("train an energy from a TOML config (resumes if interrupted)",
                     _add_train, _run_train)
COMMANDS["infer"] = ("print or plot the minima of a trained run's energy", _add_infer, _run_infer)
