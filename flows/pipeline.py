"""The pipeline flow (`nerflow-pipeline`): validate -> tokenize -> fine-tune -> evaluate -> register -> promote, in
one MLflow run.

Stages hand each other small dicts of paths and content keys (never DataFrames or models). The plan decides each
stage's key up front (nerflow.plan); a stage whose key is complete is reused, so running the same command after a
failure redoes only the failed stage and those after it, inside the same MLflow run.
"""
from __future__ import annotations

import contextlib

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Cancelled

from nerflow.config import PipelineConfig
from nerflow.locks import run_lock
from nerflow.plan import STAGES, make_plan
from nerflow import prefect_tasks
from nerflow.prefect_tasks import global_locks, run_record, tracking
from nerflow.prefect_tasks.evaluate import evaluate_task
from nerflow.prefect_tasks.promote import promote_task
from nerflow.prefect_tasks.register import register_task
from nerflow.prefect_tasks.registered import find_registered
from nerflow.prefect_tasks.tokenize import tokenize_task
from nerflow.prefect_tasks.train import train_task
from nerflow.prefect_tasks.validate import validate_task


@flow(name="nerflow-pipeline", validate_parameters=False)
def ner_pipeline(cfg: PipelineConfig, force_from: str | None = None, force_register: bool = False,
                 continue_run_id: str | None = None) -> dict:
    """`force_register`: a new version even if one has these weights; `continue_run_id`: the MLflow run this
    attempt continues (nerflow rerun), whatever its status. An interrupt (Ctrl-C, SIGTERM) ends the flow run
    Cancelled, with the MLflow run KILLED and training checkpointed: the same command continues it."""
    plan = make_plan(cfg, force_from, prefect_tasks.sources())
    keys = {s: plan.stages[s].key for s in STAGES}
    client = tracking.configure()
    flow_run_id = str(flow_run.get_id() or "")
    try:
        # the hosts' lock first: a second run of this logical run on the same host then waits there too, instead
        # of being refused by the file lock
        with team_run_lock(plan.logical_run), run_lock(cfg.cache_dir, plan.logical_run, keys):
            done = find_registered(client, cfg, plan) if global_locks.team_prefect_api() and \
                force_from is None and continue_run_id is None else None
            if done is not None:   # another host registered it while this one waited for the lock
                return done
            return _run_stages(cfg, plan, keys, client, flow_run_id, force_register, continue_run_id)
    except KeyboardInterrupt as e:
        return Cancelled(message=f"interrupted ({e or 'SIGINT'})")
    except Exception as e:  # noqa: BLE001 - only the interrupt is a cancel; anything else fails the flow run
        if type(e).__name__ != "TrainingInterrupted":
            raise
        return Cancelled(message=f"interrupted: {str(e).split('; train again')[0]}; nothing registered")


def team_run_lock(logical_run: str):
    """With a Prefect server every worker shares, one logical run at a time across hosts (the file lock above
    holds on one host); without one, nothing more."""
    if global_locks.team_prefect_api() is None:
        return contextlib.nullcontext()
    return global_locks.global_lock(global_locks.limit_name("run", logical_run[:32]),
                                    what=f"pipeline run {logical_run[:12]} on another host")


def _run_stages(cfg: PipelineConfig, plan, keys: dict[str, str], client, flow_run_id: str, force_register: bool,
                continue_run_id: str | None) -> dict:
    steps = plan.stages
    with tracking.pipeline_run(client, cfg, plan.logical_run, flow_run_id, continue_run_id) as run_id, \
            run_record.run_log(client, run_id), run_record.system_metrics(run_id):
        validated = validate_task(cfg, steps["validate"], run_id)
        tokenized = tokenize_task(cfg, steps["tokenize"], plan.model_path, validated, run_id)
        trained = train_task(cfg, steps["train"], plan.model_path, validated, tokenized, run_id)
        evaluated = evaluate_task(cfg, steps["evaluate"], validated, tokenized, trained, run_id)
        registered = register_task(cfg, steps["register"], keys, validated, trained, run_id, flow_run_id,
                                    force_register=force_register)
        promoted = promote_task(cfg, steps["promote"], validated, evaluated, registered, run_id, flow_run_id)
        run_record.describe_run(client, run_id, cfg, registered)   # scores and version are known now
    return {"run_id": run_id, "flow_run_id": flow_run_id, "metrics": evaluated["metrics"], **registered,
            "promotion": promoted["promotion"],
            "stages": {s["stage"]: s["reused"] for s in (validated, tokenized, trained, evaluated, registered,
                                                          promoted)}}
