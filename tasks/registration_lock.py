"""One registration per (model, register key) at a time, across processes and hosts.

The run lock is per logical run, and the logical run covers the promote settings while the register key does not:
two hosts (or two stage caches) running the same data, config and code with different `promote.*` settings both
looked for a version with their register key, found none, and both created one. Under this lock the look-up and the
creation are one step: the second finds the first's version and reuses it.

Where the lock lives, as for the promotion lock (tasks/promotion_lock.py):
- a local sqlite store: a file lock next to the database file (released by the kernel if its holder dies);
- a tracking server with a Prefect server (PREFECT_API_URL): a Prefect global concurrency limit every host shares;
- a tracking server without one: a file lock on this host only, and a warning that says so.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nerflow.prefect_tasks import tracking
from nerflow.prefect_tasks.global_locks import global_lock, limit_name, team_prefect_api

log = logging.getLogger("nerflow.register")
# a registration waits at most this long for another one of the same key: it logs and uploads one model
WAIT_S = 3600


@contextlib.contextmanager
def registration_lock(name: str, key: str) -> Iterator[None]:
    what = f"another registration of {name} with register key {key[:12]}"
    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") or team_prefect_api() is None:
        if not uri.startswith("sqlite:///"):
            log.warning("the registration lock holds on this host only: set PREFECT_API_URL to a Prefect server "
                        "for a lock every host shares")
        root = Path(uri.removeprefix("sqlite:///").split("?")[0]).parent if uri.startswith("sqlite:///") else \
            Path(tempfile.gettempdir())
        path = root / "locks" / ("register-" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{key}")[:200] + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for %s", what)
                fcntl.flock(f, fcntl.LOCK_EX)   # nothing reads this lock but its takers: no reader to block
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return
    with global_lock(limit_name("register", name[:40], key[:32]), timeout_s=WAIT_S, what=what):
        yield
