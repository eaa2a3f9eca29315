"""The NER pipeline flow: validate -> tokenize -> fine-tune -> evaluate -> register, in one MLflow run.

Stages hand each other small dicts of paths and content keys (never DataFrames or models). The plan decides each
stage's key up front (nerflow.plan); a stage whose key is complete is reused, so running the same command after a
failure redoes only the failed stage and those after it, inside the same MLflow run.
"""
from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from nerflow.config import PipelineConfig
from nerflow.locks import run_lock
from nerflow.plan import STAGES, make_plan
from nerflow import tasks
from nerflow.tasks import tracking
from nerflow.tasks.evaluate import evaluate_task
from nerflow.tasks.register import register_task
from nerflow.tasks.tokenize import tokenize_task
from nerflow.tasks.train import train_task
from nerflow.tasks.validate import validate_task


@flow(name="ner-pipeline", validate_parameters=False)
def ner_pipeline(cfg: PipelineConfig, force_from: str | None = None) -> dict:
    plan = make_plan(cfg, force_from, tasks.sources())
    steps, keys = plan.stages, {s: plan.stages[s].key for s in STAGES}
    client = tracking.configure()
    flow_run_id = str(flow_run.get_id() or "")
    with run_lock(cfg.cache_dir, plan.logical_run, keys), \
            tracking.pipeline_run(client, cfg, plan.logical_run, flow_run_id) as run_id:
        validated = validate_task(cfg, steps["validate"], run_id)
        tokenized = tokenize_task(cfg, steps["tokenize"], plan.model_path, validated, run_id)
        trained = train_task(cfg, steps["train"], plan.model_path, validated, tokenized, run_id)
        evaluated = evaluate_task(cfg, steps["evaluate"], validated, tokenized, trained, run_id)
        registered = register_task(cfg, steps["register"], keys, validated, trained, run_id, flow_run_id)
    return {"run_id": run_id, "flow_run_id": flow_run_id, "metrics": evaluated["metrics"], **registered,
            "stages": {s["stage"]: s["reused"] for s in (validated, tokenized, trained, evaluated, registered)}}
