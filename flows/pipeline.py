"""The pipeline flow (`nerflow-pipeline`): the stages of the declared graph (nerflow.graph), in its order, each a
Prefect task running through its adapter (tasks/stage.py), in one MLflow run.

Stages hand each other typed outputs (nerflow.outputs: paths, content keys, small fields; never DataFrames or
models). The plan decides each stage's key up front (nerflow.plan); a stage whose key is complete is reused, so
running the same command after a failure redoes only the failed stage and those after it, inside the same MLflow
run.
"""
from __future__ import annotations

import contextlib

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Cancelled

from nerflow import graph as stage_graph
from nerflow import redact
from nerflow.config import PipelineConfig
from nerflow.locks import run_lock
from nerflow.outputs import RunResult
from nerflow.plan import make_plan
from nerflow.prefect_tasks import global_locks, liveness, run_record, tracking
from nerflow.prefect_tasks.registered import OUTPUTS_ARTIFACT, find_registered
from nerflow.prefect_tasks.stage import RunContext, stage_task
from nerflow.progress import TrainingInterrupted

run_stage_task = stage_task()


@flow(name="nerflow-pipeline", validate_parameters=False)
def pipeline(cfg: PipelineConfig, force_from: str | None = None, force_register: bool = False,
             continue_run_id: str | None = None, graph: str | None = None) -> RunResult:
    """`force_from`: recompute that stage and every stage downstream of it; `force_register`: a new version even if
    one has these weights; `continue_run_id`: the MLflow run this attempt continues (nerflow rerun), whatever its
    status; `graph`: the stages to run, as "module:name" of a nerflow.graph.Graph (a flow parameter is data;
    default: nerflow.graph.PIPELINE). An interrupt (Ctrl-C, SIGTERM) ends the flow run Cancelled, with the MLflow
    run KILLED and training checkpointed: the same command continues it."""
    plan = make_plan(cfg, force_from, stage_graph.named(graph) if graph else stage_graph.PIPELINE)
    keys = {s: p.key for s, p in plan.stages.items()}
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
            return run_stages(cfg, plan, client, flow_run_id, force_register, continue_run_id)
    except KeyboardInterrupt as e:
        return Cancelled(message=f"interrupted ({e or 'SIGINT'})")
    except TrainingInterrupted as e:
        return Cancelled(message=f"interrupted: {str(e).split('; train again')[0]}; nothing registered")


def _masked_parameters(serialize):
    """Prefect stores a flow run's parameters (the whole config) on its server and shows them in its UI: stored
    with their secrets masked (nerflow.redact), like the MLflow params. The flow itself gets the real values."""
    def serialize_parameters(parameters: dict) -> dict:
        return redact.mapping(serialize(parameters))

    return serialize_parameters


pipeline.serialize_parameters = _masked_parameters(pipeline.serialize_parameters)


def team_run_lock(logical_run: str):
    """With a Prefect server every worker shares, one logical run at a time across hosts (the file lock above
    holds on one host); without one, nothing more."""
    if global_locks.team_prefect_api() is None:
        return contextlib.nullcontext()
    return global_locks.global_lock(global_locks.limit_name("run", logical_run[:32]),
                                    what=f"pipeline run {logical_run[:12]} on another host")


def run_stages(cfg: PipelineConfig, plan, client, flow_run_id: str, force_register: bool,
               continue_run_id: str | None) -> RunResult:
    """Every stage of the plan's graph in order, each given the outputs of the stages it consumes."""
    # the heartbeat: a reaper in another PID namespace judges the run by it (tasks/liveness.py)
    with tracking.pipeline_run(client, cfg, plan.logical_run, flow_run_id, continue_run_id) as run_id, \
            liveness.heartbeat(client, run_id), run_record.run_log(client, run_id), run_record.system_metrics(run_id):
        ctx = RunContext(cfg, plan, run_id, flow_run_id, force_register)
        outputs = {}
        for stage in plan.graph.stages:
            upstream = {name: outputs[name] for name in stage.consumes}
            outputs[stage.name] = run_stage_task.with_options(name=stage.name)(ctx, stage.name, upstream)
        result = RunResult(run_id, outputs, flow_run_id)
        tracking.log_json(client, run_id, result.to_json(), OUTPUTS_ARTIFACT)
        run_record.describe_run(client, run_id, cfg, result)   # scores and version are known now
    return result
