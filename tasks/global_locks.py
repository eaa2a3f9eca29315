"""Locks every host shares, from the Prefect server: a global concurrency limit of 1 slot per lock name.

File locks (nerflow.locks) hold on one host only. With a team setup (`PREFECT_API_URL` names a Prefect server that
every worker talks to) the run lock and the promotion lock come from here, so a worker on another machine waits
for the one that holds them. The slot is a lease that its holder renews while alive: a holder killed with -9 frees
it when the lease runs out (`LEASE_S`), not never.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator

log = logging.getLogger("nerflow.locks")
LEASE_S = 120


def team_prefect_api() -> str | None:
    """The Prefect server this process was pointed at (environment), or None: the temporary server of a single
    nerflow command is no lock for anyone else."""
    return os.environ.get("PREFECT_API_URL") or None


def limit_name(kind: str, *parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(["nerflow", kind, *parts]))[:120]


@contextlib.contextmanager
def global_lock(name: str, timeout_s: float | None = None, what: str = "") -> Iterator[None]:
    """Hold the one slot of the global concurrency limit `name` (created on first use). Waits up to `timeout_s`
    (None: as long as it takes), saying once that it waits."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        limit = client.read_global_concurrency_limit_by_name(name)
    if limit.active_slots >= limit.limit:
        log.info("waiting for %s (held on the Prefect server as concurrency limit %s)", what or name, name)
    with concurrency(name, occupy=1, strict=True, timeout_seconds=timeout_s, lease_duration=LEASE_S):
        yield
