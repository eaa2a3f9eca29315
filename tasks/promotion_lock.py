"""One move of an alias at a time (gate, force, rollback, settling the history), across processes:
- a local sqlite store: an flock next to the database file (released by the kernel if its holder dies);
- a tracking server with a Prefect server (PREFECT_API_URL): a Prefect global concurrency limit of 1, which every
  host that talks to that Prefect server shares (MLflow itself offers no lock or compare-and-set);
- a tracking server without one: an flock on this host only, and a warning that says so.
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

log = logging.getLogger("nerflow.promote")


@contextlib.contextmanager
def promotion_lock(name: str, alias: str) -> Iterator[None]:
    uri = tracking.tracking_uri()
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{alias}")
    if uri.startswith("sqlite:///") or team_prefect_api() is None:
        if not uri.startswith("sqlite:///"):
            log.warning("the promotion lock holds on this host only: set PREFECT_API_URL to a Prefect server for "
                        "a lock every host shares")
        root = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else \
            Path(tempfile.gettempdir())
        path = root / "locks" / f"promote-{slug}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another promotion of %s @%s to finish", name, alias)
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return
    with global_lock(limit_name("promote", slug), timeout_s=900, what=f"another promotion of {name} @{alias}"):
        yield
