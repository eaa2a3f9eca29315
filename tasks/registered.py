"""Already done? Asked of the model registry: the authority every host shares.

The stage cache answers that question on one host; with a team setup another worker may have registered this
logical run from its own cache. A logical run is done when a live version carries its register key
(`nerflow.register_key`) and that version's MLflow run finished every stage with this plan's keys: same data,
config and code, so rebuilding would give the same weights and the same gate decision.
Light on purpose: MLflow only, no torch, so a scheduled "nothing to do" ends in seconds.
"""
from __future__ import annotations

import datetime as dt
import logging

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nerflow.config import PipelineConfig
from nerflow.outputs import RunResult
from nerflow.plan import Plan
from nerflow.prefect_tasks.register import KEY_TAG, newest_version

OUTPUTS_ARTIFACT = "pipeline/outputs.json"   # what a finished attempt produced (flows/pipeline.py logs it)

log = logging.getLogger("nerflow.registered")
CHECK_TAG = "nerflow.schedule.last_check"   # on the MLflow run of the version a scheduled run did not rebuild


def find_registered(client: MlflowClient, cfg: PipelineConfig, plan: Plan) -> RunResult | None:
    """The run's result as `nerflow run` prints it, read from the registry and the version's MLflow run (the
    outputs it logged, `pipeline/outputs.json`), or None when this logical run still has work to do (no version
    with its register key, or its run did not finish every stage with this plan's keys)."""
    name, keys = cfg.registry.model_name, {s: p.key for s, p in plan.stages.items()}
    version = newest_version(client, name, {KEY_TAG: keys["register"]})
    if version is None:
        return None
    run = client.get_run(version.run_id)
    if any(run.data.tags.get(f"stage.{stage}.key") != key for stage, key in keys.items()):
        return None
    import mlflow

    try:
        logged = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{OUTPUTS_ARTIFACT}")
        return RunResult.from_json(logged, plan.graph, already_done=True)
    except (MlflowException, OSError, KeyError, TypeError, ValueError):
        return None   # logged by an older nerflow, or damaged: run the pipeline, which reuses what it can


def note_unchanged(client: MlflowClient, run_id: str, who: str) -> str:
    """Say on the version's MLflow run that a scheduled run found nothing to rebuild (the newest check wins)."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    note = f"{when} {who}: nothing to do, data, config and code unchanged"
    client.set_tag(run_id, CHECK_TAG, note)
    return note
