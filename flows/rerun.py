"""The flow `nerflow-rerun`: continue a past pipeline run from a chosen stage, started from the Prefect UI's Run form
(deployment `nerflow-rerun/rerun`). Prefect's UI cannot restart a flow run from a chosen task (PrefectHQ/prefect#21727);
this is that feature for the pipeline: `nerflow rerun RUN_ID --from STAGE` as a deployment.

Its parameters are what a person types: the MLflow run id (or a Prefect flow-run id of one of its attempts), the
stage to start from, and whether to register a new version even for identical weights. It loads the run's resolved
config exactly as `nerflow rerun` does (flows/past_run.py) and runs the pipeline as a child flow run that continues
the same MLflow run as a new attempt.

Where it runs. Stage caches are per host, and the MLflow run's tag `nerflow.host` names the host whose process ran
its latest attempt. On that host the rerun reuses what the cache holds; elsewhere it recomputes those stages.
- A flow run of a work-pool deployment that starts on another host hands itself over once: a new flow run of the
  same deployment, same parameters, on the work queue `host-<that host>` of the same pool, when a worker has polled
  that queue within the last POLLED_WITHIN_S seconds; this flow run then ends Completed, naming the new one.
- Otherwise (`nerflow serve`, which has no work queues; no live worker on that queue; a run without the tag; or a
  flow run that already came from that queue, whose worker is not on that host after all) it runs here, and before
  it starts it logs which stages it will recompute here and why (the plan on this host's cache, as `--dry-run`).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from dataclasses import dataclass
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.states import Cancelled, Completed, Failed
from pydantic import Field

from nerflow.flows import interrupts
from nerflow.flows.errors import MLFLOW_HTTP_BOUNDS
from nerflow.graph import PIPELINE

FLOW_NAME = "nerflow-rerun"
DEPLOYMENT_NAME = "rerun"
QUEUE_PREFIX = "host-"
# a worker polls every PREFECT_WORKER_QUERY_SECONDS (10 s by default); Prefect's own foreman marks a work queue
# NOT_READY after 60 s without a poll (server.services.foreman.work_queue_last_polled_timeout_seconds)
POLLED_WITHIN_S = 60.0

# the stage names as a choice in the Run form (the JSON schema's enum); the flow checks the value itself, so a call
# from a script gets the same one-line refusal
Stage = Annotated[str, Field(json_schema_extra={"enum": list(PIPELINE.all_names)})]


def host_queue(host: str) -> str:
    """The work queue of a host's workers: `host-<hostname>` (`prefect worker start ... --work-queue
    host-$(hostname)`)."""
    return f"{QUEUE_PREFIX}{host}"


@dataclass(frozen=True)
class Route:
    hand_over_to: str | None   # the work queue to hand this rerun to; None: it runs here
    why: str                   # said before it starts


def route(run_id: str, run_host: str | None, here: str, pool: str | None, queue: str | None,
          host_queue_polled: dt.datetime | None, now: dt.datetime) -> Route:
    """Where a rerun of `run_id`, whose latest attempt ran on `run_host`, runs when its flow run started on `here`,
    from work pool `pool` and queue `queue` (both None under `nerflow serve`); `host_queue_polled`: when a worker
    last polled `run_host`'s queue of that pool (None: never, or no such queue)."""
    if not run_host:
        return Route(None, f"MLflow run {run_id} names no host (tag nerflow.host): running here on {here}")
    if run_host == here:
        return Route(None, f"running on {here}, the host of MLflow run {run_id}'s latest attempt (its stage cache)")
    elsewhere = f"running here on {here}: the stages MLflow run {run_id} cached on {run_host} are recomputed here"
    if pool is None:
        return Route(None, f"MLflow run {run_id} last ran on {run_host}; this flow run is not on a work pool "
                           f"(`nerflow serve` has no work queues), so it cannot move: {elsewhere}")
    target = host_queue(run_host)
    if queue == target:
        return Route(None, f"this flow run came from work queue {target}, but its worker runs on {here}, not on "
                           f"{run_host} (start that queue's worker on {run_host}): {elsewhere}")
    if host_queue_polled is not None and (now - host_queue_polled).total_seconds() <= POLLED_WITHIN_S:
        return Route(target, f"MLflow run {run_id} last ran on {run_host}, whose worker polls work queue {target}")
    return Route(None, f"MLflow run {run_id} last ran on {run_host}, but no worker has polled work queue {target} of "
                       f"pool {pool} in the last {POLLED_WITHIN_S:.0f} s (on {run_host}: `prefect worker start --pool "
                       f"{pool} --work-queue default --work-queue {target}`): {elsewhere}")


@flow(name=FLOW_NAME, log_prints=False)
def rerun_pipeline(run_id: str, from_stage: Stage | None = None, force_register: bool = False):
    """Continue a past pipeline run as a new attempt of the same MLflow run, from a chosen stage.

    Args:
        run_id: the MLflow run id of the pipeline run, or the Prefect flow-run id of one of its attempts
            (`nerflow runs` lists them)
        from_stage: recompute this stage and every stage after it (validate, tokenize, train, evaluate, register,
            promote); empty: the first stage whose output is missing
        force_register: register a new version even if the weights equal an existing version's
    """
    with interrupts.ignored_after_the_body():   # serve's Ctrl-C after the run ended: no traceback
        from nerflow.config import ConfigError
        from nerflow.flows import past_run
        from nerflow.flows.console import quiet_libraries, quiet_prefect_failures
        from nerflow.flows.deploy_checks import check_flow_run

        quiet_libraries()
        quiet_prefect_failures()   # a failed rerun: one line on the terminal (report_failure), not Prefect's tracebacks
        for key, value in MLFLOW_HTTP_BOUNDS.items():   # an unreachable MLflow server fails the run in seconds
            os.environ.setdefault(key, value)
        logger = get_run_logger()
        from_stage = from_stage or None   # a cleared form field
        try:
            check_flow_run()   # its pull steps and job variables: editable by anyone on the Prefect server
            past = past_run.load(run_id, from_stage)
        except ConfigError as e:
            from nerflow.flows.scheduled import report_failure

            report_failure(e)   # the terminal's one line (Prefect's end-of-run line is not shown there)
            return Failed(message=f"rerun refused: {e}")
        here = socket.gethostname()
        where, me = _route(past, here)
        if where.hand_over_to:
            moved = _hand_over(me, where.hand_over_to, past.run_id, from_stage, force_register)
            return Completed(message=f"handed over to host {past.host}: flow run {moved.name} ({moved.id}) on work "
                                     f"queue {where.hand_over_to} of pool {me.work_pool_name} continues MLflow run "
                                     f"{past.run_id}")
        from nerflow.plan import describe, make_plan

        plan = make_plan(past.cfg, from_stage)
        recompute = [s for s in plan.graph.names if not plan.stages[s].complete]
        logger.log(logging.INFO if not past.host or past.host == here else logging.WARNING, "%s", where.why)
        logger.info("continuing MLflow run %s (%s) from %s on %s; recomputing here: %s\n%s", past.run_id, past.status,
                    from_stage or "the first stage not done", here, ", ".join(recompute) or "nothing",
                    "\n".join(describe(plan, past.cfg.cache_dir)))
        from nerflow.flows.pipeline import pipeline  # torch from here on
        from nerflow.flows.scheduled import finished, report_failure

        state = pipeline(past.cfg, force_from=from_stage, force_register=force_register, continue_run_id=past.run_id,
                         return_state=True)
        if state.is_cancelled():
            return Cancelled(message=f"{state.message}; run this deployment again to continue")
        try:
            result = state.result()   # raises what the pipeline raised: this flow run fails with it
        except Exception as e:
            report_failure(e)
            raise
        return Completed(message=f"rerun on {here} from {from_stage or 'the first stage not done'} (recomputed: "
                                 f"{', '.join(recompute) or 'nothing'}): {finished(result)}")


def _route(past, here: str):
    """(the route, this flow run as the Prefect server knows it)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.runtime import flow_run

    with get_client(sync_client=True) as client:
        me = client.read_flow_run(flow_run.get_id())
        polled = None
        if past.host and past.host != here and me.work_pool_name:
            try:
                polled = client.read_work_queue_by_name(host_queue(past.host), work_pool_name=me.work_pool_name) \
                    .last_polled
            except ObjectNotFound:
                pass
    now = dt.datetime.now(dt.UTC)
    return route(past.run_id, past.host, here, me.work_pool_name, me.work_queue_name, polled, now), me


def _hand_over(me, queue: str, run_id: str, from_stage: str | None, force_register: bool):
    """A flow run of this flow run's deployment, with the same parameters, on `queue`; returned at once."""
    from prefect.deployments import run_deployment

    return run_deployment(me.deployment_id, parameters={"run_id": run_id, "from_stage": from_stage,
                                                        "force_register": force_register},
                          work_queue_name=queue, timeout=0, as_subflow=True)
