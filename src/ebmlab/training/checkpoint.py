"""Atomic, code-free checkpoints: tensors in safetensors, everything else in checksummed JSON.

A checkpoint for step ``s`` is the pair ``step-<s>.safetensors`` + ``step-<s>.json`` in one
folder. Each file is written to a temporary name, flushed, fsync'ed and renamed, and the folder
is fsync'ed; the JSON is written last and is the commit mark, so a process killed at any point
leaves either the previous checkpoints or a complete new one (stray temporary files are
ignored and cleaned). The JSON stores the SHA-256 and size of the tensor file and a digest of
its own payload: a truncated or edited file is refused with a clear error. Loading parses
JSON and safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import Tensor

__all__ = [
    "CheckpointError",
    "atomic_write",
    "write_error",
    "write_checkpoint",
    "read_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "optimizer_to_flat",
    "optimizer_from_flat",
    "generator_states",
    "restore_generator_states",
    "to_jsonable",
]

FORMAT = "ebmlab-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step-(\d+)\.json$")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, tampered with or of an unknown format."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()  # give the space back; the previous file is untouched
        raise write_error(err, path) from err
    _fsync_dir(path.parent)


def write_error(err: OSError, path: Path) -> OSError:
    """Return an ``OSError`` (same class and errno) whose one-line message names the folder.

    Disk full, quota, read-only file system or permissions: the message says which file of
    which folder could not be written and why, and that the files already there are intact.
    """
    reason = os.strerror(err.errno) if isinstance(err.errno, int) else str(err)
    message = (
        f"cannot write {path.name} in {path.parent.resolve()}: {reason} (the files already in "
        "that folder are intact; free space or fix permissions, then run again to resume)"
    )
    if isinstance(err.errno, int):
        return type(err)(err.errno, message)
    return OSError(message)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _digest(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _paths(folder: Path, step: int) -> tuple[Path, Path]:
    stem = f"step-{step:09d}"
    return folder / f"{stem}.safetensors", folder / f"{stem}.json"


def write_checkpoint(
    folder: str | Path,
    step: int,
    tensors: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    *,
    keep: int = 2,
) -> Path:
    """Write the checkpoint of ``step`` into ``folder`` atomically; return the JSON path.

    Args:
        folder: the checkpoint folder (created if needed).
        step: the training step the state belongs to.
        tensors: named tensors (moved to CPU, made contiguous; aliases are copied).
        meta: JSON-serialisable data (floats round-trip exactly).
        keep: how many most recent checkpoints to keep; older ones are deleted after the new
            one is committed.

    Returns:
        The path of the JSON file (the checkpoint's commit mark).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, folder / ".") from err
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    blob = _st_save(flat) if flat else _st_save({"__empty__": torch.zeros(0)})
    tensor_path, json_path = _paths(folder, step)
    atomic_write(tensor_path, blob)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "tensor_file": tensor_path.name,
        "tensor_sha256": hashlib.sha256(blob).hexdigest(),
        "tensor_bytes": len(blob),
        "meta": meta,
    }
    text = json.dumps({**payload, "digest": _digest(payload)}, indent=1, allow_nan=True)
    atomic_write(json_path, text.encode())
    _prune(folder, keep)
    return json_path


def _prune(folder: Path, keep: int) -> None:
    for stale in folder.glob(".step-*.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue  # a live process's file in flight: not ours to delete
        try:
            stale.unlink()
        except OSError:  # pragma: no cover - another process may own it
            pass
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        tensor_path, json_path = _paths(folder, old)
        json_path.unlink(missing_ok=True)  # un-commit first, then drop the tensors
        tensor_path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive but not ours (PermissionError), or no such check here
        return True
    return True


def list_checkpoints(folder: str | Path) -> list[int]:
    """Return the steps of the committed checkpoints in ``folder``, ascending."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(steps)


def latest_checkpoint(folder: str | Path) -> Path | None:
    """Return the JSON path of the most recent committed checkpoint, or ``None``."""
    steps = list_checkpoints(folder)
    return _paths(Path(folder), steps[-1])[1] if steps else None


def read_checkpoint(path: str | Path) -> tuple[int, dict[str, Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; return ``(step, tensors, meta)``.

    Args:
        path: the checkpoint's JSON file, or its folder (then the latest checkpoint).

    Raises:
        CheckpointError: missing, truncated or tampered files, or an unknown format.
    """
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"no checkpoint (step-*.json) in {path}")
        path = latest
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is not valid JSON (truncated or edited?): {err}"
        ) from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ebmlab checkpoint (format {FORMAT!r})")
    if record.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {record.get('version')}; expected {VERSION}"
        )
    digest = record.pop("digest", None)
    if digest != _digest(record):
        raise CheckpointError(f"checkpoint {path} fails its checksum: the JSON was modified")
    fields = {"tensor_file": str, "tensor_bytes": int, "tensor_sha256": str, "step": int,
              "meta": dict}
    for key, kind in fields.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            raise CheckpointError(
                f"checkpoint {path} lacks a valid {key!r} ({kind.__name__}): not written by "
                "ebmlab, or edited"
            )
    tensor_path = path.with_name(record["tensor_file"])
    if not tensor_path.is_file():
        raise CheckpointError(f"checkpoint {path} has lost its tensor file {tensor_path.name}")
    blob = tensor_path.read_bytes()
    if len(blob) != record["tensor_bytes"]:
        raise CheckpointError(
            f"tensor file {tensor_path} has {len(blob)} bytes; expected "
            f"{record['tensor_bytes']} (truncated?)"
        )
    if hashlib.sha256(blob).hexdigest() != record["tensor_sha256"]:
        raise CheckpointError(
            f"tensor file {tensor_path} fails its SHA-256 checksum (corrupted or tampered)"
        )
    try:
        tensors = _st_load(blob)
    except Exception as err:  # safetensors' SafetensorError: a forged but re-signed file
        raise CheckpointError(
            f"tensor file {tensor_path} is not a valid safetensors file "
            f"({type(err).__name__}: {err}); not written by ebmlab"
        ) from err
    tensors.pop("__empty__", None)
    return int(record["step"]), tensors, record["meta"]


def to_jsonable(value: object, where: str) -> object:
    """Return ``value`` (tuples as lists) if JSON can store it; ``where`` names it in the error."""
    if isinstance(value, tuple):
        return [to_jsonable(v, where) for v in value]
    if isinstance(value, list):
        return [to_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, where) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(
        f"{where} holds a {type(value).__name__}, which a checkpoint cannot store "
        "(only tensors, numbers, strings, lists and dicts)"
    )


def optimizer_to_flat(
    state: Mapping[str, Any], prefix: str = "optimizer"
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimiser ``state_dict`` into named tensors and JSON metadata."""
    tensors: dict[str, Tensor] = {}
    entries: dict[str, dict[str, Any]] = {}
    for pid, per_param in state["state"].items():
        record: dict[str, Any] = {"tensors": [], "values": {}}
        for key, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}.state.{pid}.{len(record['tensors'])}"] = value
                record["tensors"].append(key)
            else:
                record["values"][key] = to_jsonable(value, f"{prefix} state {key!r}")
        entries[str(pid)] = record
    groups = to_jsonable(state["param_groups"], f"{prefix} param_groups")
    return tensors, {"state": entries, "param_groups": groups}


def optimizer_from_flat(
    tensors: Mapping[str, Tensor], meta: Mapping[str, Any], like: Mapping[str, Any],
    prefix: str = "optimizer",
) -> dict[str, Any]:
    """Rebuild an optimiser ``state_dict`` from :func:`optimizer_to_flat`'s output.

    ``like`` is the current optimiser's ``state_dict()``: it restores tuples (``betas``).
    """
    state: dict[int, dict[str, Any]] = {}
    for pid, record in meta["state"].items():
        entry: dict[str, Any] = dict(record["values"])
        for i, key in enumerate(record["tensors"]):
            name = f"{prefix}.state.{pid}.{i}"
            if name not in tensors:
                raise CheckpointError(f"checkpoint lacks optimiser tensor {name}")
            entry[key] = tensors[name]
        state[int(pid)] = entry
    groups = []
    for i, group in enumerate(meta["param_groups"]):
        ref = like["param_groups"][i] if i < len(like["param_groups"]) else {}
        groups.append(
            {k: tuple(v) if isinstance(ref.get(k), tuple) else v for k, v in group.items()}
        )
    return {"state": state, "param_groups": groups}


def generator_states(generators: Mapping[str, torch.Generator]) -> dict[str, Tensor]:
    """Return the state of every named generator and of torch's global RNGs."""
    out = {f"rng.{name}": g.get_state() for name, g in generators.items()}
    out["rng.__torch_cpu__"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.__torch_cuda_{i}__"] = s
    return out


def restore_generator_states(
    tensors: Mapping[str, Tensor], generators: Mapping[str, torch.Generator]
) -> None:
    """Restore the states saved by :func:`generator_states`."""
    for name, g in generators.items():
        key = f"rng.{name}"
        if key not in tensors:
            raise CheckpointError(f"checkpoint lacks the state of generator {name!r}")
        g.set_state(tensors[key])
    torch.set_rng_state(tensors["rng.__torch_cpu__"])
    cuda = sorted(k for k in tensors if k.startswith("rng.__torch_cuda_"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
