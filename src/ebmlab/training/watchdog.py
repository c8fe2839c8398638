"""A torchrun worker's watchdog: exit when the agent that launched it is gone."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["watch_launcher"]

_WATCHED: list[int] = []  # the launcher pid being watched (at most one watchdog thread)


def watch_launcher(describe: Callable[[], str] = lambda: "worker", interval_s: float = 1.0,
                   ) -> bool:
    """Exit this worker when the torchrun agent that started it dies; return whether watching.

    torchrun ends its workers when one fails, but when the agent itself is killed (SIGKILL,
    OOM killer, a lost node shell) nothing tells the workers, which would train on as orphans
    and collide with a relaunch on the same run folder. A daemon thread checks every
    ``interval_s`` seconds whether the parent process is still the agent (an orphan is
    re-parented); if not, it prints one line (naming ``describe()``, e.g. the rank) and exits
    the process with status 1. Checkpoints are committed atomically: the last one is intact.
    Only processes launched by torchrun (``TORCHELASTIC_RUN_ID`` set) are watched;
    ``EBMLAB_WATCH_LAUNCHER=0`` turns it off.
    """
    if _WATCHED or "TORCHELASTIC_RUN_ID" not in os.environ:
        return bool(_WATCHED)
    if os.environ.get("EBMLAB_WATCH_LAUNCHER", "1") == "0":
        return False
    parent = os.getppid()
    if parent <= 1:
        return False
    _WATCHED.append(parent)

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                who = describe()
                print(
                    f"ebmlab: {who}: the torchrun agent (pid {parent}) is gone; stopping this "
                    "worker (checkpoints are committed atomically: the last one is intact; "
                    "relaunch to resume)",
                    file=sys.stderr, flush=True,
                )
                os._exit(1)

    threading.Thread(target=watch, name="ebmlab-launcher-watchdog", daemon=True).start()
    return True
