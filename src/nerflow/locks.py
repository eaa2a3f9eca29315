"""One process per logical run: a lock file created atomically, recognised as stale when its process is dead."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


class RunLockedError(RuntimeError):
    """Another live process is running the same logical run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def run_lock(root: Path, logical_run: str, keys: dict[str, str] | None = None) -> Iterator[Path]:
    """`keys`: the stage keys this run uses, recorded so cache pruning leaves them alone while it runs."""
    path = Path(root) / "locks" / f"{logical_run}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "keys": keys or {}}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _holder(path)
            if holder and holder.get("host") == me["host"] and _alive(int(holder.get("pid", -1))):
                raise RunLockedError(f"this run ({logical_run[:12]}) is already running in process {holder['pid']} "
                                     f"since {time.ctime(holder['started'])}; wait for it or stop it") from None
            if holder and holder.get("host") != me["host"]:
                raise RunLockedError(f"this run ({logical_run[:12]}) is locked by {holder.get('host')} pid "
                                     f"{holder.get('pid')}; if that machine is gone, delete {path}") from None
            log.warning("taking over a stale lock of a dead process (%s)", holder)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RunLockedError(f"could not take the lock {path}")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def held_locks(root: Path) -> list[dict]:
    """Live locks, for cache pruning: what a running run depends on must stay."""
    out = []
    for path in (Path(root) / "locks").glob("*.lock"):
        holder = _holder(path)
        if holder and _alive(int(holder.get("pid", -1))):
            out.append({**holder, "logical_run": path.stem})
    return out
