"""One process per logical run, and one process per stage key, with OS file locks: the kernel releases a lock when
its process dies, so a lock left by a killed run is free again at once, with no race between two processes taking
over a stale lock. The file's content (pid, host, start time, stage keys) is for messages and for cache pruning.

The locks are open-file-description (OFD) locks (`F_OFD_SETLK`), not flock, because of their readers: cache
pruning (`held_locks`) must know which locks are held without taking one. flock has no "test" operation, so the
reader took a shared flock for an instant, and a run starting in that instant was refused ("already running in
process None", 827 refusals in 26,341 attempts over 2 s). `F_OFD_GETLK` asks the kernel who holds a lock and takes
nothing, so a reader can never make a writer fail. OFD rather than classic POSIX (`lockf`) locks: those are dropped
when the process closes *any* descriptor of the file (`note_generation` opens a second one) and do not conflict
between two threads of one process; OFD locks, like flock, belong to the open file and end with it or its process.
Where the platform has no OFD locks (not Linux), flock with the shared-lock test is the fallback.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
OFD = hasattr(fcntl, "F_OFD_SETLK")
# struct flock (Linux, 64-bit off_t): l_type, l_whence, l_start, l_len, l_pid, padded to 32 bytes. l_start = l_len
# = 0: the whole file; l_pid must be 0 for OFD locks.
_FLOCK = struct.Struct("hhqqi4x")


class RunLockedError(RuntimeError):
    """Another live process is running the same logical run."""


def _try_lock(f) -> bool:
    """Take the exclusive lock of open file `f` without waiting; False when another open file holds it."""
    try:
        if OFD:
            fcntl.fcntl(f, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        else:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):   # EAGAIN, or EACCES which POSIX also allows for "held"
        return False
    return True


def _unlock(f) -> None:
    if OFD:
        fcntl.fcntl(f, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))
    else:
        fcntl.flock(f, fcntl.LOCK_UN)


def _is_held(f) -> bool:
    """Does another open file hold a lock on `f`'s file? With OFD locks the kernel answers without locking
    anything; the flock fallback has to take a shared lock for an instant."""
    if OFD:
        answer = fcntl.fcntl(f, fcntl.F_OFD_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK
    try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(f, fcntl.LOCK_UN)
    return False


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
        if not _try_lock(f):
            holder = _read(f) or {}
            # an empty record: the holder took the lock an instant ago and has not written it yet
            who = (f"in process {holder.get('pid')} on {holder.get('host')} since "
                   f"{time.ctime(holder['started'])}") if holder.get("started") else "in another process (starting)"
            raise RunLockedError(f"this run ({logical_run[:12]}) is already running {who}; wait for it or stop "
                                 "it") from None
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
            _unlock(f)


def note_generation(root: Path, logical_run: str, stage: str, generation: str) -> None:
    """Record in this process's run lock that the run reads `generation` of `stage`, so cache pruning leaves it
    alone even after a forced recompute elsewhere replaced it as the key's output. Only the holder of the run lock
    writes its file (the lock is advisory: this second handle of the same process may)."""
    path = Path(root) / "locks" / f"{logical_run}.lock"
    try:
        with open(path, "r+") as f:
            held = _read(f) or {}
            if held.get("pid") != os.getpid():
                return
            held.setdefault("generations", {})[stage] = generation
            f.seek(0)
            f.truncate()
            json.dump(held, f)
            f.flush()
    except OSError:
        return


def _holder_line(holder: dict) -> str:
    run = str(holder.get("logical_run") or "?")[:12]
    return f"process {holder.get('pid')} on {holder.get('host')} (run {run})"


@contextlib.contextmanager
def stage_lock(root: Path, stage: str, key: str, logical_run: str = "", poll_s: float = 0.2) -> Iterator[dict | None]:
    """Held while this process computes (stage, key). If another live process holds it, say so once and wait.
    Yields the holder waited for (None: no wait), so the caller re-checks the cache: the other process may have
    completed the very output this one was about to compute.

    Waits by polling a non-blocking lock rather than one blocking call, so a signal handler that only sets a flag
    (graceful stop) is not stuck behind another run's training."""
    path = Path(root) / "locks" / f"stage-{stage}-{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        waited = None
        while True:
            if _try_lock(f):
                break
            if waited is None:
                waited = _read(f) or {}
                log.info("%s: waiting for %s which is computing key %s", stage, _holder_line(waited), key)
            time.sleep(poll_s)
        f.seek(0)
        f.truncate()
        # "keys" in the run lock's shape, so cache pruning protects what is being computed
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "stage": stage,
                   "key": key, "logical_run": logical_run, "keys": {stage: key}}, f)
        f.flush()
        try:
            yield waited
        finally:
            f.seek(0)
            f.truncate()
            f.flush()
            _unlock(f)


def held_locks(root: Path) -> list[dict]:
    """Locks held by live processes (on this host), for cache pruning: what a running run uses must stay. Takes no
    lock (see the module's docstring): a run starting meanwhile is never refused because of it."""
    out = []
    for path in (Path(root) / "locks").glob("*.lock"):
        try:
            f = open(path)
        except FileNotFoundError:   # removed since the listing
            continue
        with f:
            if _is_held(f):
                held = _read(f) or {}
                # a run lock is named by its logical run; a stage lock records the run it computes for
                out.append({**held, "logical_run": held.get("logical_run") or path.stem})
    return out
