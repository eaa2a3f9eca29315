"""Helpers for the served-scorer tests: a pipeline run's stage outputs, and versions registered as nerflow did before
model hashes (no `nerflow.model_sha256` tag)."""
from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow import MlflowClient

from nerflow import cache
from nerflow.prefect_tasks import register, tracking


def stage_output(cfg, run_id: str, stage: str) -> Path:
    """The cache entry a pipeline run used for `stage` (its `stage.<stage>.key` tag)."""
    key = MlflowClient().get_run(run_id).data.tags[f"stage.{stage}.key"]
    found = cache.lookup(Path(cfg.cache_dir), stage, key)
    assert found is not None, f"no complete {stage} entry for {key}"
    return found


def register_without_hash(name: str, task: str, model_dir: Path) -> str:
    """Register `model_dir` as a new version of `name` as nerflow did before model hashes: the same servable pyfunc
    (its bundled code included), no `nerflow.model_sha256` tag. Returns its `models:/` URI."""
    client = tracking.configure()
    with mlflow.start_run(experiment_id=tracking.experiment_id(client, "nerflow-before-hashes")) as run:
        info = register.log_servable_model(run.info.run_id, str(model_dir), task)
    version = mlflow.register_model(info.model_uri, name).version
    return f"models:/{name}/{version}"
