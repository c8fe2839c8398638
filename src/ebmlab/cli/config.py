"""The TOML schema of ``ebmlab train``: read, validate and build a config; rebuild a run.

A config is a TOML file with top-level settings and one table per component::

    seed = 0
    num_steps = 500
    batch_size = 256
    output = "runs/eight_gaussians"

    [energy]      # name = one of eb.energies.ENERGIES ("mlp", "ellipse", ...), plus its options
    [data]        # name = one of eb.data.DATASETS, num, seed, plus its options
    [loss]        # name = one of eb.losses.LOSSES, plus its options
    [regularizer] # optional: name = one of eb.losses.REGULARIZERS, weight, plus its options
    [negatives]   # name = one of eb.training.negatives.NEGATIVES, plus its options
    [optimizer]   # name = "adam" | "adamw" | "sgd" | "rmsprop", plus its options
    [domain]      # low, high: the box for plots, noise and inference
    [plot]        # optional: num (grid points per axis), x (the input drawn)
    [logging]     # optional: tensorboard = true (needs the tensorboard package)

Every name is looked up in its registry, so a new energy, data set, loss, regulariser, negative
source or sampler kernel is usable here as soon as it is registered. Unknown keys and bad
values are refused with the table and key named, and a close spelling suggested ("did you
mean").
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from ebmlab.cli._common import did_you_mean
from ebmlab.data import DATASETS
from ebmlab.domain import Box
from ebmlab.energies import ENERGIES
from ebmlab.energy import LatentEnergy
from ebmlab.latent import FreeEnergy, Grid
from ebmlab.losses import LOSSES, REGULARIZERS
from ebmlab.samplers import KERNELS
from ebmlab.training.batches import split_data
from ebmlab.training.checkpoint import read_checkpoint
from ebmlab.training.negatives import NEGATIVES
from ebmlab.training.run import resolve_loss

__all__ = [
    "ConfigError",
    "DTYPES",
    "load_config",
    "resolve_config",
    "dump_toml",
    "build",
    "build_energy",
    "load_run",
]


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
_TABLES = ("energy", "data", "loss", "regularizer", "negatives", "optimizer", "domain", "plot",
           "logging")
_UNNAMED_TABLES = ("domain", "plot", "logging")
_REQUIRED_TABLES = ("energy", "data", "loss")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
               "rmsprop": torch.optim.RMSprop}


def _check_options(table: str, name: str, fn: Callable[..., Any], options: Mapping[str, Any],
                   supplied: set[str], extra: tuple[str, ...] = ()) -> None:
    """Refuse options that ``fn`` does not take (``supplied`` ones are filled in by us)."""
    params = inspect.signature(fn).parameters
    usable = [p for p in params if p not in supplied and p != "self"
              and params[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                         inspect.Parameter.VAR_KEYWORD)]
    allowed = sorted(usable + list(extra))
    for key in options:
        if key not in allowed:
            raise ConfigError(f"[{table}] {name!r} has no option {key!r}"
                              f"{did_you_mean(key, allowed)}; options: {allowed}")
    missing = [p for p in usable
               if params[p].default is inspect.Parameter.empty and p not in options]
    if missing:
        needed = ", ".join(f"{p} = ..." for p in missing)
        raise ConfigError(f"[{table}] {name!r} needs {needed} in the [{table}] table")


def _unknown_name(table: str, name: object, registry: Mapping[str, Any],
                  key: str = "name") -> ConfigError:
    return ConfigError(f"[{table}] {key} must be one of {sorted(registry)}; got {name!r}"
                       f"{did_you_mean(str(name), registry)}")


# "fn() missing 1 required positional argument: 'num'": a Python signature is no CLI advice.
_SIGNATURE = re.compile(r"^[\w.<>]+\(\) ")


def _plain(err: Exception) -> str:
    """The error's message without a leading Python function name."""
    return _SIGNATURE.sub("", str(err))


def _call(table: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"[{table}] bad value: {_plain(err)}") from err


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
                f"unknown key {key!r} in config{did_you_mean(key, [*_TOP, *_TABLES])}; allowed "
                f"keys: {sorted(_TOP)} and tables {list(_TABLES)}"
            )
        kind, _ = _TOP[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"{key} must be {kind}; got {value!r}")
        out[key] = value
    for key, (_, default) in _TOP.items():
        out.setdefault(key, default)
    if out["output"] is None:
        raise ConfigError("config needs output = \"runs/NAME\" (the run folder)")
    if out["dtype"] not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}; got {out['dtype']!r}"
                          f"{did_you_mean(out['dtype'], DTYPES)}")
    for key in ("num_steps", "batch_size", "log_every", "keep_checkpoints"):
        if out[key] < 1:
            raise ConfigError(f"{key} must be >= 1; got {out[key]}")
    for table in _REQUIRED_TABLES:
        if table not in config:
            raise ConfigError(f"config needs a [{table}] table")
    for table in _TABLES:
        if table in config:
            out[table] = dict(config[table])
            if table not in _UNNAMED_TABLES and "name" not in out[table]:
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
        first = sorted(unknown)[0]
        raise ConfigError(f"[plot] has unknown keys {sorted(unknown)}"
                          f"{did_you_mean(first, ['num', 'x'])}; allowed: ['num', 'x']")
    logging = out.get("logging", {})
    for key, value in logging.items():
        if key != "tensorboard":
            raise ConfigError(f"[logging] has no key {key!r}{did_you_mean(key, ['tensorboard'])}"
                              "; allowed: ['tensorboard']")
        if not isinstance(value, bool):
            raise ConfigError(f"[logging] tensorboard must be true or false; got {value!r}")
    return out


def _box(config: Mapping[str, Any]) -> Any:
    if "domain" not in config:
        return None
    return _call("domain", Box, config["domain"]["low"], config["domain"]["high"])


def _build_data(spec: Mapping[str, Any], seed: int) -> Any:
    registry = DATASETS
    options = dict(spec)
    name = options.pop("name")
    if name not in registry:
        raise _unknown_name("data", name, registry)
    data_seed = options.pop("seed", seed + 1)
    _check_options("data", name, registry[name], options, {"generator", "dtype", "device"})
    g = torch.Generator().manual_seed(int(data_seed))
    return _call("data", registry[name], **options, generator=g)


# Config options that become other constructor arguments, and config defaults that differ from
# the class's: the only per-name knowledge here (every other registered energy takes its
# table's options as keyword arguments, plus y_dim/x_dim where its signature names them).
def _quadratic_arguments(options: Mapping[str, Any], y_dim: int, x_dim: int) -> dict[str, Any]:
    allowed = {"scale"}
    if set(options) - allowed or x_dim:
        raise ConfigError(
            f"[energy] 'quadratic' is unconditional and takes only {sorted(allowed)}; got "
            f"{sorted(options)}"
        )
    scale = _call("energy", float, options.get("scale", 1.0))
    return {"precision": torch.eye(y_dim) * scale}


_DERIVED_ARGUMENTS = {"quadratic": _quadratic_arguments}
_DEFAULTS: dict[str, dict[str, Any]] = {"ellipse": {"w": (1.0, 1.0)}}
# A latent energy is trained through its free energy over a periodic grid of z.
_FREE_ENERGY_OPTIONS = {"beta": math.inf, "num_z": 48}


def build_energy(spec: Mapping[str, Any], y_dim: int, x_dim: int) -> torch.nn.Module:
    """Build the energy of an ``[energy]`` table for answers of ``y_dim`` (inputs ``x_dim``)."""
    options = dict(spec)
    name = options.pop("name")
    if name not in ENERGIES:
        raise _unknown_name("energy", name, ENERGIES)
    cls = ENERGIES[name]
    is_latent = issubclass(cls, LatentEnergy)
    free = {k: options.pop(k, v) for k, v in _FREE_ENERGY_OPTIONS.items()} if is_latent else {}
    if name in _DERIVED_ARGUMENTS:
        kwargs = _DERIVED_ARGUMENTS[name](options, y_dim, x_dim)
    else:
        dims = {"y_dim": y_dim, "x_dim": x_dim}
        _check_options("energy", name, cls, {**_DEFAULTS.get(name, {}), **options}, set(dims),
                       tuple(free))
        params = inspect.signature(cls).parameters
        kwargs = {**_DEFAULTS.get(name, {}), **{k: v for k, v in dims.items() if k in params}}
        kwargs.update({k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    if not is_latent:
        return _call("energy", cls, **kwargs)
    grid = _call("energy", Grid, 0.0, 2 * math.pi, free["num_z"], periodic=True)
    latent = _call("energy", cls, **kwargs)
    return _call("energy", FreeEnergy, latent, grid, beta=free["beta"])


def _build_negatives(spec: Mapping[str, Any] | None, box: Any) -> Any:
    if spec is None:
        return None
    options = dict(spec)
    name = options.pop("name")
    if name not in NEGATIVES:
        raise _unknown_name("negatives", name, NEGATIVES)
    cls = NEGATIVES[name]
    params = inspect.signature(cls).parameters
    _check_options("negatives", name, cls, options, {"domain", "buffer"})
    if "domain" in params:
        if box is None and params["domain"].default is inspect.Parameter.empty:
            raise ConfigError(f"[negatives] {name!r} needs a [domain] table")
        if box is not None:
            options["domain"] = box
    if isinstance(options.get("sampler"), str):
        kernels = KERNELS
        kernel = options["sampler"]
        if kernel not in kernels:
            raise _unknown_name("negatives", kernel, kernels, "sampler")
        options["sampler"] = _call("negatives", kernels[kernel], options.get("step_size", 0.01),
                                   domain=box)
    return _call("negatives", cls, **options)


def _build_optimizer(spec: Mapping[str, Any], params: Any) -> torch.optim.Optimizer:
    registry = _OPTIMIZERS
    options = dict(spec)
    name = options.pop("name")
    if name not in registry:
        raise _unknown_name("optimizer", name, registry)
    _check_options("optimizer", name, registry[name], options, {"params"})
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return _call("optimizer", registry[name], params, **options)


def _build_regularizer(spec: Mapping[str, Any] | None) -> Callable[..., Any] | None:
    if spec is None:
        return None
    options = dict(spec)
    name = options.pop("name")
    if name not in REGULARIZERS:
        raise _unknown_name("regularizer", name, REGULARIZERS)
    fn = REGULARIZERS[name]
    weight = _call("regularizer", float, options.pop("weight", 1.0))
    inputs = resolve_loss(fn).inputs
    _check_options("regularizer", name, fn, options, set(inputs), ("weight",))

    def weighted(**values: Any) -> torch.Tensor:
        return weight * fn(**values, **options)

    # fit() reads what to pass from the parameter names: the regulariser's own inputs.
    weighted.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in inputs])
    weighted.__name__ = name
    return weighted


def _check_loss(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Check the [loss] table in the config's words; return the loss name and its options."""
    options = dict(config["loss"])
    name = options.pop("name")
    if not isinstance(name, str) or name not in LOSSES:
        raise _unknown_name("loss", name, LOSSES)
    params = inspect.signature(LOSSES[name]).parameters
    try:
        resolve_loss(name, options)
    except (TypeError, ValueError) as err:
        message = str(err).replace("pass it in loss_options", "add it to the [loss] table")
        for key in options:
            if key not in params:
                message += did_you_mean(key, [p for p in params if p not in ("self",)])
                break
        raise ConfigError(f"[loss] {message}") from err
    return name, options


def _check_negatives_given(config: Mapping[str, Any], loss: str, regularizer: Any) -> None:
    """A loss (or regulariser) that scores negatives needs a [negatives] table."""
    needs = resolve_loss(loss).needs_negatives or (
        regularizer is not None and resolve_loss(regularizer).needs_negatives)
    if needs and config.get("negatives") is None:
        what = f"[loss] {loss!r}" if resolve_loss(loss).needs_negatives else (
            f"[regularizer] {config['regularizer']['name']!r}")
        raise ConfigError(
            f"{what} needs negatives: add a [negatives] table, e.g.\n"
            '  [negatives]\n  name = "sampled"\n  num_steps = 20\n  step_size = 0.01\n'
            f"(sources: {sorted(NEGATIVES)})"
        )


def _to_device(data: Any, device: torch.device) -> Any:
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, Mapping):
        return {k: _to_device(v, device) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(_to_device(v, device) for v in data)
    return data


def build(config: Mapping[str, Any], device: torch.device | str | None = None) -> dict[str, Any]:
    """Build every object a resolved config describes (energy, data, loss, negatives, ...).

    Tensors are made in torch's default dtype: the commands set it to the config's ``dtype``
    first (``torch.set_default_dtype(DTYPES[config["dtype"]])``). Everything is made on the CPU
    (the same random numbers on every device), then the data and the energy move to ``device``.
    """
    loss_name, loss_options = _check_loss(config)
    data = _build_data(config["data"], config["seed"])
    y, x = split_data(data)
    y_dim = int(math.prod(y.shape[1:]))
    x_dim = 0 if x is None else int(math.prod(x.shape[1:]))
    torch.manual_seed(config["seed"])  # the energy's initialisation
    energy = build_energy(config["energy"], y_dim, x_dim)
    if device is not None and torch.device(device).type != "cpu":
        data = _to_device(data, torch.device(device))
        y, x = split_data(data)
        energy = energy.to(device)
    box = _box(config)
    built = {
        "data": data, "energy": energy, "loss": loss_name, "loss_options": loss_options,
        "negatives": _build_negatives(config.get("negatives"), box), "domain": box,
        "optimizer": _build_optimizer(config["optimizer"], energy.parameters()),
        "regularizer": _build_regularizer(config.get("regularizer")),
        "x": x, "y": y, "y_dim": y_dim, "x_dim": x_dim,
    }
    _check_negatives_given(config, loss_name, built["regularizer"])
    return built


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


def load_run(run: str | Path, device: torch.device | str | None = None,
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rebuild a trained run: returns ``(config, built)`` with the energy's trained weights.

    Sets torch's default dtype to the run's ``dtype`` first, as ``ebmlab train`` did; the
    built dict also holds the checkpoint's ``step`` and ``meta``. :func:`ebmlab.load_run` is
    the public form.
    """
    run = Path(run)
    if not (run / "config.toml").is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no config.toml)")
    config = resolve_config(load_config(run / "config.toml"))
    torch.set_default_dtype(DTYPES[config["dtype"]])
    built = build(config, device)
    step, tensors, meta = read_checkpoint(run)
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    built["energy"].load_state_dict(state)
    built["energy"].eval()
    built["step"], built["meta"] = step, meta
    return config, built
