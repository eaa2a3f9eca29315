"""Registration stage: log the fine-tuned model as a servable pyfunc, register a new version, tag it, alias it.

Idempotent: a version is found by its `nerflow.register_key` tag before a new one is made, and a complete stage
output (registered.json) whose version still exists means "already registered", nothing new.
All or nothing: if anything fails after the version exists, the version is deleted again.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model

import nerflow
from nerflow.config import PipelineConfig, config_hash
from nerflow.plan import StagePlan
from nerflow.tasks import tracking
from nerflow.tasks.stage import run_stage, stage_task

log = logging.getLogger("nerflow.register")
# What the served model needs, pinned to what it was trained and tested with.
PIP_REQUIREMENTS = ["mlflow==3.17.2", "torch==2.13.0", "transformers==5.23.0", "tokenizers==0.23.3",
                    "numpy==2.4.6", "pandas==3.1.1", "pydantic==2.14.3", "pyyaml==6.0.3"]
EXAMPLE = ["Maria Lopez flew from Berlin to New York to meet the board of Acme Corp."]
KEY_TAG = "nerflow.register_key"


def log_servable_model(run_id: str, model_dir: str):
    from nerflow import serving

    # MLflow files the logged model under the *active* experiment, not the run's (default: experiment 0, whose
    # artifacts go to ./mlruns of whatever the working directory is): point it at the run's experiment.
    mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
    # MLflow nags about type hints (we give an explicit signature) and about cloudpickle (the model pickles by
    # reference to nerflow.serving, which travels with it in code_paths).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
        return Model.log(artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id,
                         python_model=serving.NerModel(), artifacts={serving.ARTIFACT: model_dir},
                         code_paths=[str(Path(nerflow.__file__).parent)], pip_requirements=PIP_REQUIREMENTS,
                         signature=serving.SIGNATURE, input_example=EXAMPLE)


def find_version(client: MlflowClient, name: str, key: str, run_id: str | None = None):
    """The newest version registered under this register key (and, if given, by this MLflow run)."""
    query = f"name = '{name}' and tag.`{KEY_TAG}` = '{key}'" + (f" and run_id = '{run_id}'" if run_id else "")
    try:
        found = client.search_model_versions(query)
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def create_version(client: MlflowClient, name: str, alias: str, run_id: str, model_dir: str, tags: dict) -> str:
    """Log + register + alias, deleting the version again if anything after its creation fails."""
    info = log_servable_model(run_id, model_dir)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="NER model fine-tuned and registered by nerflow")
    version = client.create_model_version(name, source=info.model_uri, run_id=run_id, tags=tags,
                                          model_id=info.model_id).version
    try:
        client.set_registered_model_alias(name, alias, version)
    except BaseException:
        log.error("registration failed after creating %s version %s: deleting that version", name, version)
        client.delete_model_version(name, version)
        raise
    return version


def still_registered(client: MlflowClient, step: StagePlan) -> bool:
    try:
        done = json.loads((step.path / "registered.json").read_text())
        client.get_model_version(done["model_name"], str(done["version"]))
        return True
    except (OSError, ValueError, KeyError, MlflowException):
        return False


@stage_task("register")
def register_task(cfg: PipelineConfig, step: StagePlan, keys: dict, validated: dict, trained: dict, run_id: str,
                  flow_run_id: str | None) -> dict:
    client = tracking.configure()
    name, alias = cfg.registry.model_name, cfg.registry.alias
    if step.complete and not still_registered(client, step):  # someone deleted the version: register again
        step = dataclasses.replace(step, complete=False, forced=True)

    def compute(out: Path) -> None:
        # Forced (--force-register, rerun --from) means a new version: only one this MLflow run made counts.
        existing = find_version(client, name, step.key, run_id if step.forced else None)
        if existing is not None:  # made by an attempt that died before recording it
            version = existing.version
            client.set_registered_model_alias(name, alias, version)
        else:
            tags = {"data_hash": validated["data_hash"], "config_hash": config_hash(cfg),
                    "git_commit": tracking.git_state()["git_commit"], "base_model": cfg.model.name_or_path,
                    "prefect_flow_run_id": flow_run_id or "", "mlflow_run_id": run_id, KEY_TAG: step.key,
                    **{f"nerflow.{stage}_key": key for stage, key in keys.items()}}
            version = create_version(client, name, alias, run_id, trained["model_dir"], tags)
        (out / "registered.json").write_text(json.dumps({"model_name": name, "version": int(version),
                                                         "alias": alias, "registered_by_run": run_id}))

    result = run_stage(client, run_id, cfg.cache_dir, step, compute)
    done = json.loads((Path(result["path"]) / "registered.json").read_text())
    if result["reused"]:
        log.info("already registered: %s version %s (run %s); nothing new to register", name, done["version"],
                 done["registered_by_run"])
    else:
        log.info("registered %s version %s with alias @%s", name, done["version"], alias)
    tracking.log_tags(client, run_id, {"registered_model": name, "registered_version": done["version"]})
    return {**result, **done, "uri": f"models:/{name}@{alias}"}
