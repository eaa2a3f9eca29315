"""Shared plumbing of a cached stage: reuse or compute by its planned key, and say which in the log and in MLflow."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from mlflow import MlflowClient

from nerflow import cache, locks
from nerflow.plan import StagePlan
from nerflow.prefect_tasks import tracking

log = logging.getLogger("nerflow.stage")


def run_stage(client: MlflowClient, run_id: str, root: Path, step: StagePlan, compute: Callable[[Path], None]) -> dict:
    """Returns {"stage", "key", "path", "reused"}: what the next stage needs, small and JSON-able.
    `step.complete` was decided by the plan; a forced stage is recomputed even if an output exists. A retry of a
    stage whose output was completed by the failed try (the fault came after it) does not compute it again.
    One process computes a key at a time (locks.stage_lock): another run that needs the same key (it differs only
    in later settings) waits for it and reuses its output."""
    started = time.perf_counter()
    found = cache.lookup(root, step.stage, step.key) is not None
    reused = step.complete and found
    if reused:
        log.info("%s: reusing %s (inputs, settings and code unchanged)", step.stage, step.path)
    elif found and not step.forced:  # written by an earlier try of this task (a Prefect retry): not again
        log.info("%s: output completed since the plan was made (by an earlier try): %s", step.stage, step.path)
    else:
        reused = compute_once(client, run_id, root, step, compute, found)
    attempt = tracking.attempt_of(client, run_id)
    tracking.log_tags(client, run_id, {f"stage.{step.stage}": "reused" if reused else "computed",
                                       f"stage.{step.stage}.key": step.key})
    tracking.log_metrics(client, run_id, {f"stage/{step.stage}_seconds": time.perf_counter() - started}, step=attempt)
    return {"stage": step.stage, "key": step.key, "path": str(step.path), "reused": reused}


def compute_once(client: MlflowClient, run_id: str, root: Path, step: StagePlan, compute: Callable[[Path], None],
                 found_before: bool) -> bool:
    """Compute under the stage key's lock; True when a concurrent run completed it while this one waited."""
    logical_run = client.get_run(run_id).data.tags.get(tracking.LOGICAL_RUN_TAG, "")
    with locks.stage_lock(root, step.stage, step.key, logical_run) as waited:
        # A forced stage whose output existed before the wait must still be computed: what is there now is that
        # old output, not the other run's.
        if waited is not None and not (step.forced and found_before) \
                and cache.lookup(root, step.stage, step.key) is not None:
            log.info("%s: reusing %s, computed by a concurrent run", step.stage, step.path)
            return True
        log.info("%s: computing (key %s)", step.stage, step.key)
        try:
            with cache.stage_output(root, step.stage, step.key, step.parts) as tmp:
                compute(tmp)
        except BaseException:
            tracking.log_tags(client, run_id, {"failed_stage": step.stage})
            raise
    return False


def stage_task(name: str, **kwargs):
    """A pipeline stage as a Prefect task: no Prefect result cache (the stage cache above decides reuse, and
    verifies outputs Prefect cannot), retries with backoff only for transient faults (network, MLflow server)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    options = {"name": name, "cache_policy": NO_CACHE, "retries": 2, "retry_delay_seconds": [2, 10],
               "retry_condition_fn": tracking.retry_if_transient, **kwargs}
    return task(**options)
