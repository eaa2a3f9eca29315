"""Locks every host shares, from the Prefect server: a global concurrency limit of 1 slot per lock name.

File locks (nerflow.locks) hold on one host only. With a team setup (`PREFECT_API_URL` names a Prefect server that
every worker talks to) the run lock and the promotion lock come from here, so a worker on another machine waits
for the one that holds them. The slot is a lease that its holder renews while alive: a holder killed with -9 frees
it when the lease runs out (`LEASE_S`), not never.

A limit exists only while someone uses it: one per logical run, kept forever, would pile up by the thousand. Its
holder deletes it while still holding it, after its work and before it gives the slot back, so nobody can have
taken a slot on the limit being deleted (it has one, and the deleter holds it). A waiter polling the deleted
limit, or one that read it just before, is told it is missing (`strict`) and creates it again and takes it: the
next holder of a new limit, still one at a time.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator

log = logging.getLogger("nerflow.locks")
LEASE_S = 120


def team_prefect_api() -> str | None:
    """The Prefect server this process was pointed at (environment), or None: the temporary server of a single
    nerflow command is no lock for anyone else."""
    return os.environ.get("PREFECT_API_URL") or None


def limit_name(kind: str, *parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(["nerflow", kind, *parts]))[:120]


MISSING = "must be created before acquiring slots"   # Prefect's strict acquisition on a missing limit


@contextlib.contextmanager
def global_lock(name: str, timeout_s: float | None = None, what: str = "") -> Iterator[None]:
    """Hold the one slot of the global concurrency limit `name` (created on first use, deleted by its last
    holder). Waits up to `timeout_s` (None: as long as it takes), saying once that it waits."""
    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError  # what `concurrency` raises
    from prefect.concurrency.sync import concurrency

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    said = False
    with contextlib.ExitStack() as held:
        while True:
            if _ensure(name) and not said:
                log.info("waiting for %s (held on the Prefect server as concurrency limit %s)", what or name, name)
                said = True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                held.enter_context(concurrency(name, occupy=1, strict=True, timeout_seconds=left,
                                               lease_duration=LEASE_S))
                break
            except ConcurrencySlotAcquisitionError as e:
                if MISSING not in str(e):
                    raise
                # its holder deleted it between our creating or reading it and asking for the slot: again
        try:
            yield
        except BaseException as e:
            if not _lease_lost(e):
                _delete(name)
            raise
        _delete(name)


def _ensure(name: str) -> bool:
    """Create the limit unless it exists; whether someone holds its slot now."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:   # deleted by its holder just now: free
            return False
    return limit.active_slots >= limit.limit


def _delete(name: str) -> None:
    """Delete the limit this process holds the slot of. Best effort: a limit left behind is only clutter, and the
    next holder deletes it."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        pass
    except Exception as e:  # noqa: BLE001 - the work under the lock is done; its outcome is what counts
        log.warning("could not delete the concurrency limit %s on the Prefect server: %s", name, e)


def _lease_lost(exc: BaseException) -> bool:
    """Prefect cancels the holder (a CancelledError thrown into it) when the slot's lease could not be renewed:
    the server may have given the slot to another holder since, whose limit this one must not delete."""
    import asyncio

    return isinstance(exc, asyncio.CancelledError) or type(exc).__name__ == "CancelledError"
