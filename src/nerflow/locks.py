"""One process per logical run, with an OS file lock (flock): the kernel releases it when its process dies, so a
lock left by a killed run is free again at once, with no race between two processes taking over a stale lock.
The file's content (pid, host, start time, stage keys) is for messages and for cache pruning."""
from __future__ import annotations

import contextlib
import fcntl
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


def _read(f) -> dict | None:
    f.seek(0)
    try:
        return json.loads(f.read() or "null")
    except ValueError:
        return None


@contextlib.contextmanager
def run_lock(root: Path, logical_run: str, keys: dict[str, str] | None = None) -> Iterator[Path]:
    """`keys`: the stage keys this run uses, recorded so cache pruning leaves them alone while it runs."""
    path = Path(root) / "locks" / f"{logical_run}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(f) or {}
            raise RunLockedError(f"this run ({logical_run[:12]}) is already running in process {holder.get('pid')} "
                                 f"on {holder.get('host')} since {time.ctime(holder.get('started', 0))}; wait for it "
                                 "or stop it") from None
        previous = _read(f)
        if previous:  # its process died without releasing: a killed run, whose MLflow run is continued now
            log.warning("taking over from a dead run (pid %s on %s, started %s)", previous.get("pid"),
                        previous.get("host"), time.ctime(previous.get("started", 0)))
        f.seek(0)
        f.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "keys": keys or {}}, f)
        f.flush()
        try:
            yield path
        finally:
            f.seek(0)
            f.truncate()   # empty = released cleanly; the file stays so no one locks a replaced inode
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


def held_locks(root: Path) -> list[dict]:
    """Locks held by live processes (on this host), for cache pruning: what a running run uses must stay."""
    out = []
    for path in (Path(root) / "locks").glob("*.lock"):
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                out.append({**(_read(f) or {}), "logical_run": path.stem})
                continue
            fcntl.flock(f, fcntl.LOCK_UN)
    return out
