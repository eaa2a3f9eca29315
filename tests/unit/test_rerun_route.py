"""Where a rerun started from the Prefect UI runs (flows/rerun.py `route`): on the host of the run's latest attempt
when a worker there polls its queue, else here, saying so."""
from __future__ import annotations

import datetime as dt

import pytest

from nerflow.flows.rerun import POLLED_WITHIN_S, host_queue, route

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
RECENT, STALE = NOW - dt.timedelta(seconds=5), NOW - dt.timedelta(seconds=POLLED_WITHIN_S + 1)


@pytest.mark.parametrize("run_host, pool, queue, polled, moves_to, says", [
    ("gpu-1", "nerflow", "default", RECENT, None, "running on gpu-1, the host of MLflow run R"),   # already there
    (None, "nerflow", "default", RECENT, None, "names no host"),
    ("gpu-2", None, None, None, None, "`nerflow serve` has no work queues"),                    # nerflow serve
    ("gpu-2", "nerflow", "default", RECENT, "host-gpu-2", "whose worker polls work queue host-gpu-2"),
    ("gpu-2", "nerflow", "default", STALE, None, "no worker has polled work queue host-gpu-2 of pool nerflow"),
    ("gpu-2", "nerflow", "default", None, None, "--work-queue default --work-queue host-gpu-2"),
    # handed over once already, but the queue's worker is not on gpu-2: no second hand-over, no ping-pong
    ("gpu-2", "nerflow", "host-gpu-2", RECENT, None, "its worker runs on gpu-1, not on gpu-2"),
])
def test_route(run_host, pool, queue, polled, moves_to, says):
    where = route("R", run_host, "gpu-1", pool, queue, polled, NOW)
    assert where.hand_over_to == moves_to
    assert says in where.why, where.why
    if moves_to is None and run_host not in (None, "gpu-1"):
        assert "recomputed here" in where.why


def test_the_host_queue_is_named_after_the_hostname():
    assert host_queue("worker-7.example.org") == "host-worker-7.example.org"
