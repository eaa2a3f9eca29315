"""Shared plumbing of a cached stage: look its key up, reuse or compute, and say which in the log and in MLflow."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from mlflow import MlflowClient

from nerflow import cache
from nerflow.tasks import tracking

log = logging.getLogger("nerflow.stage")


def run_stage(client: MlflowClient, run_id: str, root: Path, stage: str, parts: dict,
              compute: Callable[[Path], None]) -> dict:
    """Returns {"stage", "key", "path", "reused"}: what the next stage needs, small and JSON-able."""
    key = cache.stage_key(stage, parts)
    started = time.perf_counter()
    path = cache.lookup(root, stage, key)
    reused = path is not None
    if reused:
        log.info("%s: reusing %s (its inputs, settings and code are unchanged)", stage, path)
    else:
        log.info("%s: computing (key %s)", stage, key)
        with cache.stage_output(root, stage, key, parts) as tmp:
            compute(tmp)
        path = root / stage / key
    seconds = time.perf_counter() - started
    tracking.log_tags(client, run_id, {f"stage.{stage}": "reused" if reused else "computed",
                                       f"stage.{stage}.key": key})
    tracking.log_metrics(client, run_id, {f"stage_{stage}_seconds": seconds})
    return {"stage": stage, "key": key, "path": str(path), "reused": reused}
