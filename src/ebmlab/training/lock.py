"""One writer per run folder: an exclusive lock file holding its owner's pid and host.

:func:`ebmlab.fit` (on rank 0 under torchrun) and ``ebmlab train`` hold the lock of their
checkpoint folder for as long as they write into it, so a second writer on the same folder is
refused with :class:`RunLockedError` instead of racing the first one (deleting its temporary
files, interleaving ``metrics.csv`` rows, overwriting ``config.toml``).

The lock is the file ``<folder>/.ebmlab.lock``, whose JSON text names the owner (``pid``,
``host``, start time, command line). Two mechanisms guard it:

- where the operating system offers ``fcntl.flock`` (Linux, macOS), the owner holds an
  exclusive ``flock`` on the file; the kernel drops it when the owner dies, however it dies,
  so a lock left by a killed run is *stale* and taken over at once;
- otherwise (or where the file system refuses ``flock``) the file is created with
  ``O_EXCL``; a lock whose owner is on this host and whose pid is no longer alive is stale and
  taken over; a lock of another host is refused (delete the file if that run is over).

The same folder spelled as a relative or absolute path, or through a symbolic link, is the
same run: paths are resolved. The lock is re-entrant within one thread (``ebmlab train``
holds it and calls ``fit``, which takes it again); another thread of the same process is
refused like another process.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "LOCK_NAME",
    "RunLock",
    "RunLockedError",
    "hold",
    "is_writer",
    "lock_owner",
    "locks_checkpoint_dir",
    "resolve_folder",
]

LOCK_NAME = ".ebmlab.lock"
_R = TypeVar("_R")

try:  # pragma: no cover - platform dependent
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_HELD: dict[str, RunLock] = {}  # resolved folder -> the lock this process holds on it
_GUARD = threading.Lock()


class RunLockedError(ValueError):
    """Another live process (or thread) is writing into the run folder."""


def resolve_folder(folder: str | os.PathLike[str]) -> Path:
    """Return the absolute, symlink-free form of ``folder`` (which need not exist yet).

    Example:
        >>> import os
        >>> resolve_folder("runs/a") == resolve_folder(os.path.join(os.getcwd(), "runs", "a"))
        True
    """
    return Path(os.path.abspath(os.fspath(folder))).resolve()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:  # pragma: no cover - e.g. Windows semantics
        return True
    return True


def lock_owner(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Return the owner record of ``folder``'s lock file (``pid``, ``host``, ...), or ``None``.

    Returns ``None`` when there is no lock file or it cannot be parsed; the record is there
    whether or not its owner is still alive.
    """
    path = resolve_folder(folder) / LOCK_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process"
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(
        started, (int, float)) else "?"
    return f"pid {owner.get('pid')} on host {owner.get('host')} (since {when})"


class RunLock:
    """The exclusive lock of one run folder; use :func:`hold` (a context manager).

    Args:
        folder: the run (checkpoint) folder; created if needed.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with hold(folder) as lock:
        ...     lock_owner(folder)["pid"] == os.getpid()
        True
        >>> lock_owner(folder) is None  # released: the lock file is gone
        True
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = resolve_folder(folder)
        self.path = self.folder / LOCK_NAME
        self.thread = threading.get_ident()
        self.count = 0
        self._fd: int | None = None
        self._created_folder = False
        self._owner: RunLock | None = None  # the lock already held, on a re-entrant acquire

    # -- acquiring -------------------------------------------------------------------------

    def acquire(self) -> RunLock:
        """Take the lock (or refuse); re-entrant in the owning thread; returns ``self``."""
        key = str(self.folder)
        with _GUARD:
            held = _HELD.get(key)
            if held is not None:
                if held.thread != threading.get_ident():
                    raise RunLockedError(
                        f"checkpoint_dir {self.folder} is in use by another thread of this "
                        f"process (pid {os.getpid()}); one run folder takes one writer"
                    )
                held.count += 1
                self._owner = held
                return held
            self._make_folder()
            try:
                self._take()
            except BaseException:
                self._remove_made_folder()
                raise
            self.count = 1
            _HELD[key] = self
            return self

    def _make_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(
                f"checkpoint_dir {self.folder} is a file, not a folder; give a folder for the "
                "run's checkpoints"
            )
        if not self.folder.exists():
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise _os_error(err, self.folder, "cannot create the run folder") from err
            self._created_folder = True

    def _record(self) -> bytes:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "argv": list(sys.argv)}
        return json.dumps(record).encode()

    def _take(self) -> None:
        if fcntl is not None:
            try:
                if self._take_flock():
                    return
            except _NoFlock:
                pass
        self._take_exclusive()

    def _take_flock(self) -> bool:
        """The flock protocol; ``False`` to fall back to O_EXCL (flock unsupported)."""
        for _ in range(20):  # retry while a releasing owner unlinks the file under us
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise _os_error(err, self.folder, "cannot create the lock file") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(self._busy_message(lock_owner(self.folder))) from None
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise _NoFlock from err
                raise _os_error(err, self.folder, "cannot lock the run folder") from err
            try:  # the file we locked must still be the one at the path
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, self._record())
                os.fsync(fd)
            except OSError as err:
                os.close(fd)
                raise _os_error(err, self.folder, "cannot write the lock file") from err
            self._fd = fd
            return True
        raise RunLockedError(self._busy_message(lock_owner(self.folder)))  # pragma: no cover

    def _take_exclusive(self) -> None:
        """The O_EXCL protocol with stale-lock take-over (no flock)."""
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = lock_owner(self.folder)
                if owner is None or not self._is_stale(owner):
                    if owner is None and not self.path.exists():
                        continue  # released meanwhile
                    raise RunLockedError(self._busy_message(owner)) from None
                self._break_stale(owner)
                continue
            except OSError as err:
                raise _os_error(err, self.folder, "cannot create the lock file") from err
            try:
                os.write(fd, self._record())
                os.fsync(fd)
            finally:
                os.close(fd)
            return
        raise RunLockedError(self._busy_message(lock_owner(self.folder)))  # pragma: no cover

    @staticmethod
    def _is_stale(owner: dict[str, Any]) -> bool:
        pid = owner.get("pid")
        if owner.get("host") != socket.gethostname() or not isinstance(pid, int):
            return False  # another host's lock: its pid cannot be checked from here
        return not _pid_alive(pid)

    def _break_stale(self, owner: dict[str, Any]) -> None:
        # Rename first, then check that what was renamed is the stale record (a concurrent
        # taker may have replaced it); put a live record back.
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = None
        if moved == owner or moved is None:
            aside.unlink(missing_ok=True)
        else:  # pragma: no cover - a race between two takers
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)

    def _busy_message(self, owner: dict[str, Any] | None) -> str:
        hint = (
            "wait for it to finish or stop it, or choose another checkpoint_dir/--output"
        )
        if owner and owner.get("host") not in (None, socket.gethostname()):
            hint += f"; if that run is over, delete {self.path}"
        return (
            f"checkpoint_dir {self.folder} is in use by another run ({_describe(owner)}): one "
            f"run folder takes one writer; {hint}"
        )

    # -- releasing -------------------------------------------------------------------------

    def release(self) -> None:
        """Release one hold; the last release removes the lock file."""
        if self._owner is not None:
            owner, self._owner = self._owner, None
            owner.release()
            return
        with _GUARD:
            if self.count <= 0:
                return
            self.count -= 1
            if self.count > 0:
                return
            _HELD.pop(str(self.folder), None)
            with contextlib.suppress(OSError):
                self.path.unlink()  # unlink while holding the flock (takers re-check inodes)
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            self._remove_made_folder()

    def _remove_made_folder(self) -> None:
        if self._created_folder:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only if it is still empty
            self._created_folder = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _NoFlock(Exception):
    """The file system does not support flock."""


def _os_error(err: OSError, folder: Path, what: str) -> OSError:
    """An OSError of the same errno whose one-line message names the run folder."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    return type(err)(err.errno, f"{what} in {folder}: {reason}") if isinstance(
        err.errno, int) else OSError(f"{what} in {folder}: {err}")


def is_writer() -> bool:
    """Whether this process writes run folders: rank 0 under torchrun, any single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def locks_checkpoint_dir(fn: Callable[..., _R]) -> Callable[..., _R]:
    """Decorate ``fit``-like ``fn``: hold the lock of its ``checkpoint_dir=`` for the call.

    Only the writing process (:func:`is_writer`) takes the lock; other ranks, calls without a
    folder and arguments of other types (refused by ``fn`` itself) pass straight through.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _R:
        folder = kwargs.get("checkpoint_dir")
        if not isinstance(folder, (str, os.PathLike)) or not is_writer():
            return fn(*args, **kwargs)
        with hold(folder):
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def hold(folder: str | os.PathLike[str] | None) -> Iterator[RunLock | None]:
    """Hold the lock of ``folder`` for the ``with`` block (nothing when ``folder`` is None).

    Raises:
        RunLockedError: another live process or thread holds it.
        ValueError: ``folder`` is an existing file.
        OSError: the folder cannot be created or written (one line naming it).
    """
    if folder is None:
        yield None
        return
    lock = RunLock(folder).acquire()
    try:
        yield lock
    finally:
        lock.release()
