"""Registration stage: log the fine-tuned model as a servable pyfunc, register a new version, tag it, alias it.

All or nothing: if anything fails after the version exists, the version is deleted again, so the registry never
shows a half-made model.
"""
from __future__ import annotations

import logging
from pathlib import Path

import mlflow
from mlflow.models import Model
from prefect import task

import nerflow
from nerflow.config import PipelineConfig, config_hash
from nerflow.tasks import tracking

log = logging.getLogger("nerflow.register")
# What the served model needs, pinned to what it was trained and tested with.
PIP_REQUIREMENTS = ["mlflow==3.17.2", "torch==2.13.0", "transformers==5.23.0", "tokenizers==0.23.3",
                    "numpy==2.4.6", "pandas==3.1.1", "pydantic==2.14.3", "pyyaml==6.0.3"]
EXAMPLE = ["Maria Lopez flew from Berlin to New York to meet the board of Acme Corp."]


def log_servable_model(run_id: str, model_dir: str):
    from nerflow import serving

    return Model.log(artifact_path=None, name="model", flavor=mlflow.pyfunc, run_id=run_id, python_model=serving.NerModel(),
                     artifacts={serving.ARTIFACT: model_dir}, code_paths=[str(Path(nerflow.__file__).parent)],
                     pip_requirements=PIP_REQUIREMENTS, signature=serving.SIGNATURE, input_example=EXAMPLE)


@task(name="register")
def register_task(cfg: PipelineConfig, validated: dict, trained: dict, run_id: str, flow_run_id: str | None) -> dict:
    client = tracking.configure()
    info = log_servable_model(run_id, trained["model_dir"])
    tags = {"data_hash": validated["data_hash"], "config_hash": config_hash(cfg),
            "git_commit": tracking.git_state()["git_commit"], "base_model": cfg.model.name_or_path,
            "prefect_flow_run_id": flow_run_id or "", "mlflow_run_id": run_id, "train_key": trained["key"]}
    name = cfg.registry.model_name
    if not _exists(client, name):
        client.create_registered_model(name, description="NER model fine-tuned and registered by nerflow")
    version = client.create_model_version(name, source=info.model_uri, run_id=run_id, tags=tags,
                                          model_id=info.model_id).version
    try:
        client.set_registered_model_alias(name, cfg.registry.alias, version)
        tracking.log_tags(client, run_id, {"registered_model": name, "registered_version": version})
    except BaseException:
        log.error("registration failed after creating %s version %s: deleting that version", name, version)
        client.delete_model_version(name, version)
        raise
    log.info("registered %s version %s with alias @%s", name, version, cfg.registry.alias)
    return {"model_name": name, "version": int(version), "alias": cfg.registry.alias,
            "uri": f"models:/{name}@{cfg.registry.alias}"}


def _exists(client, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False
