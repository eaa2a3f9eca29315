"""The NER pipeline flow: validate -> tokenize -> fine-tune -> evaluate -> register, in one MLflow run.

Stages hand each other small dicts of paths and content keys (never DataFrames or models), so each one can be
cached, skipped or rerun on its own.
"""
from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from nerflow.config import PipelineConfig
from nerflow.tasks import tracking
from nerflow.tasks.evaluate import evaluate_task
from nerflow.tasks.register import register_task
from nerflow.tasks.tokenize import tokenize_task
from nerflow.tasks.train import train_task
from nerflow.tasks.validate import validate_task


@flow(name="ner-pipeline", validate_parameters=False)
def ner_pipeline(cfg: PipelineConfig) -> dict:
    client = tracking.configure()
    flow_run_id = str(flow_run.get_id() or "")
    with tracking.pipeline_run(client, cfg, flow_run_id) as run_id:
        validated = validate_task(cfg, run_id)
        tokenized = tokenize_task(cfg, validated, run_id)
        trained = train_task(cfg, validated, tokenized, run_id)
        evaluated = evaluate_task(cfg, validated, tokenized, trained, run_id)
        registered = register_task(cfg, validated, trained, run_id, flow_run_id)
    return {"run_id": run_id, "flow_run_id": flow_run_id, "metrics": evaluated["metrics"], **registered,
            "stages": {s["stage"]: s["reused"] for s in (validated, tokenized, trained, evaluated)}}
