"""Trained energies as files: ``load_run`` (a run folder), ``save_energy`` / ``load_energy``.

``save_energy(energy, "model.safetensors")`` writes the energy's plain state dict (the names of
``energy.state_dict()``, no prefixes) as safetensors, and beside it ``model.json``: the class,
the shape and dtype of every tensor and, for an energy built from a config (``ebmlab train`` /
:func:`load_run`), the ``[energy]`` table that rebuilds it. Neither file is pickled: loading
runs no code from the file.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ebmlab.training.checkpoint import atomic_write
from ebmlab.training.run import History

__all__ = ["TrainedRun", "load_run", "save_energy", "load_energy", "FORMAT"]

FORMAT = "ebmlab-energy"
_VERSION = 1
# How an energy built from a config was built: its [energy] table and dimensions, keyed by the
# module itself (weakly: the entry goes with the energy).
_SPECS: weakref.WeakKeyDictionary[nn.Module, dict[str, Any]] = weakref.WeakKeyDictionary()


@dataclass
class TrainedRun:
    """A run folder written by ``ebmlab train``, rebuilt by :func:`load_run`.

    Attributes:
        energy: the trained energy (weights of the latest checkpoint, in eval mode).
        config: the resolved config (``config.toml`` with every default filled in).
        history: the training history (one record per logging point).
        step: the step of the checkpoint loaded.
        path: the run folder.
        data: the training data as the config builds it (``y``, or ``(x, y)``).
        domain: the config's ``[domain]`` box, or ``None``.
    """

    energy: nn.Module
    config: dict[str, Any]
    history: History
    step: int
    path: Path
    data: Any = field(repr=False, default=None)
    domain: Any = None


def _remember(energy: nn.Module, config: Mapping[str, Any], y_dim: int, x_dim: int) -> None:
    _SPECS[energy] = {"energy": dict(config["energy"]), "y_dim": y_dim, "x_dim": x_dim,
                      "dtype": config["dtype"]}


def load_run(path: str | Path, *, device: torch.device | str | None = None) -> TrainedRun:
    """Load a run folder written by ``ebmlab train``: the trained energy, config and history.

    Sets torch's default dtype to the run's ``dtype`` (as ``ebmlab train`` did), rebuilds the
    energy from ``config.toml`` and loads the weights of the latest checkpoint (verified by its
    checksums).

    Args:
        path: the run folder (the config's ``output``).
        device: where to put the energy and the data (default: the CPU).

    Returns:
        A :class:`TrainedRun`.

    Raises:
        FileNotFoundError: ``path`` holds no ``config.toml``.
        ValueError: a damaged config or checkpoint
            (:class:`ebmlab.training.checkpoint.CheckpointError`).

    Example:
        >>> import ebmlab as eb
        >>> run = eb.load_run("runs/eight_gaussians_cd")  # doctest: +SKIP
        >>> run.energy(torch.zeros(1, 2)), run.history["loss"][-1]  # doctest: +SKIP
    """
    from ebmlab.cli.config import load_run as load  # the config schema lives with the CLI

    config, built = load(path, device)
    _remember(built["energy"], config, built["y_dim"], built["x_dim"])
    history = History(records=[dict(r) for r in built["meta"].get("history", [])])
    return TrainedRun(built["energy"], config, history, built["step"], Path(path),
                      built["data"], built["domain"])


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    return path, path.with_suffix(".json")


def save_energy(energy: nn.Module, path: str | Path) -> Path:
    """Write ``energy``'s state dict as a plain safetensors file, with a small JSON beside it.

    The tensor names are those of ``energy.state_dict()`` (no prefix), so another project loads
    them with ``model.load_state_dict(safetensors.torch.load_file(path))``. Both files are
    written atomically.

    Args:
        energy: any ``nn.Module`` energy.
        path: the ``.safetensors`` file (the suffix is added if missing); the JSON is the same
            path with ``.json``.

    Returns:
        The path of the safetensors file.

    Raises:
        TypeError: ``energy`` is not an ``nn.Module``.

    Example:
        >>> import tempfile, torch, ebmlab as eb
        >>> energy = eb.energies.MLPEnergy(2, hidden=(8,))
        >>> path = eb.save_energy(energy, tempfile.mkdtemp() + "/mlp")
        >>> again = eb.load_energy(path, eb.energies.MLPEnergy(2, hidden=(8,)))
        >>> y = torch.randn(4, 2)
        >>> bool((again(y) == energy(y)).all())
        True
    """
    if not isinstance(energy, nn.Module):
        raise TypeError(f"energy must be a torch.nn.Module; got {type(energy).__name__}")
    from safetensors.torch import save

    tensor_path, json_path = _paths(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in energy.state_dict().items()}
    cls = type(energy)
    meta = {
        "format": FORMAT,
        "version": _VERSION,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                    for k, v in state.items()},
        "config": _SPECS.get(energy),
    }
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(tensor_path, save(state))
    atomic_write(json_path, (json.dumps(meta, indent=1, allow_nan=True) + "\n").encode())
    return tensor_path


def _read(tensor_path: Path, json_path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not tensor_path.is_file():
        raise FileNotFoundError(f"energy file {tensor_path} does not exist")
    try:
        state = load(tensor_path.read_bytes())
    except SafetensorError as err:
        raise ValueError(f"{tensor_path} is not a safetensors file (truncated?): {err}") from err
    meta: dict[str, Any] = {}
    if json_path.is_file():
        try:
            meta = json.loads(json_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{json_path} is not valid JSON (truncated?): {err}") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{json_path} is not an ebmlab energy description ({FORMAT!r})")
    return state, meta


def _rebuild(spec: Mapping[str, Any], json_path: Path) -> nn.Module:
    from ebmlab.cli.config import DTYPES, ConfigError, build_energy

    old = torch.get_default_dtype()
    torch.set_default_dtype(DTYPES[spec["dtype"]])
    try:
        energy = build_energy(spec["energy"], int(spec["y_dim"]), int(spec["x_dim"]))
    except ConfigError as err:
        raise ValueError(f"{json_path}: cannot rebuild the energy: {err}") from err
    finally:
        torch.set_default_dtype(old)
    config = {"energy": spec["energy"], "dtype": spec["dtype"]}
    _remember(energy, config, int(spec["y_dim"]), int(spec["x_dim"]))
    return energy


def load_energy(path: str | Path, energy: nn.Module | None = None, *,
                device: torch.device | str | None = None) -> nn.Module:
    """Load an energy written by :func:`save_energy`.

    With ``energy`` the weights are loaded into it (names and shapes must match). Without
    it, the energy is rebuilt from the JSON's ``[energy]`` table, which energies built from a
    config carry (``ebmlab train`` runs, :func:`load_run`); any other class needs ``energy``.

    Args:
        path: the ``.safetensors`` file written by :func:`save_energy`.
        energy: an energy of the same architecture to load into, or ``None``.
        device: move the loaded energy there.

    Returns:
        The energy with the saved weights, in eval mode (bit-identical to the saved one).

    Raises:
        FileNotFoundError: no such file.
        ValueError: damaged files, mismatched names or shapes, or no way to rebuild.
    """
    tensor_path, json_path = _paths(path)
    state, meta = _read(tensor_path, json_path)
    if energy is None:
        spec = meta.get("config")
        if not spec:
            raise ValueError(
                f"{tensor_path} holds a {meta.get('class', 'custom')} energy saved without a "
                "config: build one of the same architecture and pass it, "
                "eb.load_energy(path, MyEnergy(...))"
            )
        energy = _rebuild(spec, json_path)
    if not isinstance(energy, nn.Module):
        raise TypeError(f"energy must be a torch.nn.Module; got {type(energy).__name__}")
    expected = energy.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{tensor_path} does not fit this {type(energy).__name__}: missing "
                         f"{missing}, unexpected {unexpected}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape) or v.dtype != expected[k].dtype:
            raise ValueError(
                f"{tensor_path}: {k!r} is {v.dtype} of shape {tuple(v.shape)}; this "
                f"{type(energy).__name__} has {expected[k].dtype} of shape "
                f"{tuple(expected[k].shape)} (nothing is cast silently)")
    energy.load_state_dict(state)
    if device is not None:
        energy = energy.to(device)
    energy.eval()
    return energy
