"""Schedules of the pipeline as Prefect deployments of `nerflow-scheduled` (flows/scheduled.py). `nerflow serve`, which
executes them and the rerun deployment, is flows/runner.py.

Prefect keeps them: a deployment holds the parameters (config path, overrides, working directory: visible and
editable in the Prefect UI), one schedule, and a concurrency limit of 1 so runs of one deployment never overlap.
Collision strategy CANCEL_NEW: a run that comes due while the previous one still trains is cancelled ("Deployment
concurrency limit reached.") instead of queued, so a short interval builds no backlog; the next due run picks up
whatever changed. Prefect 3.8.8 also cancels such runs when they turn Late (rule EnforceDeploymentConcurrencyOnLate,
the fix for #21060 / #16984); `--collision enqueue` queues them instead.

Scheduling the same name again updates the deployment and its one schedule in place (same schedule id): Prefect's
upsert deletes and recreates schedules with new ids, which is how redeploys produced duplicate runs (#17538,
#18894); runs the scheduler creates are keyed by schedule id and time, so a kept id cannot be scheduled twice. The
update (and `pause`) first pauses the deployment and deletes the old schedule's runs until a scheduler pass under
way has ended: such a pass otherwise still inserts runs of the old cadence (seen in CI).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass

from nerflow.flows.prefect_server import ServiceUnavailable

log = logging.getLogger("nerflow.schedule")
FLOW_NAME = "nerflow-scheduled"
MONITOR_FLOW = "nerflow-monitor"   # flows/monitor_flow.py: a schedule made with --monitor has one of each
FLOWS = (FLOW_NAME, MONITOR_FLOW)
SCHEDULE_SLUG = "nerflow"   # the one schedule's identity within its deployment (create_schedule)
SCHEDULER_SETTLE_S = 5.0   # quiet this long: a pass of Prefect's scheduler under way has inserted its runs
START_ONE = ("start one with `make team-up && source .team/team.env` (PostgreSQL, MLflow and Prefect servers on "
             "this machine), or `prefect server start` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`")


@dataclass(frozen=True)
class Cadence:
    cron: str | None = None
    interval_s: float | None = None
    timezone: str | None = None

    def schedule(self):
        from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

        if self.cron:
            return CronSchedule(cron=self.cron, timezone=self.timezone or "UTC")
        return IntervalSchedule(interval=dt.timedelta(seconds=self.interval_s), timezone=self.timezone)


def require_server() -> str:
    """The configured Prefect server's API URL, answering; else one error that says how to get one."""
    import httpx

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise ServiceUnavailable("schedules need a Prefect server and PREFECT_API_URL is not set: " + START_ONE)
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as e:
        raise ServiceUnavailable(f"the Prefect server at {url} (PREFECT_API_URL) does not answer ({e}): start it, "
                                 "or unset PREFECT_API_URL and use `nerflow run`, which needs no server") from None
    return url


def apply(name: str, config: str, overrides: list[str], workdir: str, cadence: Cadence | None, pool: str | None,
          collision: str | None = None, on_drift_of: str | None = None) -> tuple[str, bool]:
    """Create the deployment `nerflow-scheduled/NAME`, or update it in place. Returns (id, created). Without a
    cadence (a retraining deployment `--monitor` creates) a new one gets no schedule and an existing one keeps its
    own. `on_drift_of`: a registered model whose drift event (flows/monitor_flow.py) starts a run of it; a deployment
    that has such a trigger keeps it. `collision` (cancel_new | enqueue): default enqueue when a drift trigger starts
    it (a drift event must not be dropped because a retraining runs), else cancel_new."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.deployments.runner import EntrypointType

    from nerflow.config import ConfigError
    from nerflow.flows import monitor_deployments
    from nerflow.flows.scheduled import scheduled_pipeline
    from nerflow.prefect_tasks.global_locks import global_lock, limit_name

    parameters = {"config": config, "overrides": list(overrides), "workdir": workdir}
    # one `nerflow schedule NAME` at a time on the server: Prefect's create is an upsert that deletes the schedules
    # of the deployment it updates, so two creators of a new name would each think they created it, and the first
    # one's cadence would be silently replaced; in turns, the second finds the first's deployment and updates it
    with global_lock(limit_name("schedule", name), what=f"schedule {name}, which another command is changing"), \
            get_client(sync_client=True) as client:
        existing = find(client, name)
        drift_of = on_drift_of or (monitor_deployments.drift_model(client, existing.id) if existing else None)
        if drift_of and collision == "cancel_new":
            raise ConfigError(f"--collision cancel_new: the drift event of {drift_of} starts {name} "
                              f"(nerflow-monitor/{name}), and a run it starts while one trains would be cancelled "
                              "and the drift not acted on; such a schedule queues its runs (enqueue)")
        strategy = ConcurrencyLimitStrategy((collision or ("enqueue" if drift_of else "cancel_new")).upper())
        description = (f"nerflow pipeline of {config} {' '.join(overrides)}: retrains when its data, config or code "
                       "changed; otherwise ends as 'nothing to do'" +
                       (f"; also started by the drift event of {drift_of} (nerflow-monitor/{name})" if drift_of
                        else ""))
        if pool:
            ensure_pool(client, pool)
        if existing is None:
            deployment = scheduled_pipeline.to_deployment(
                name=name, parameters=parameters, schedule=None, concurrency_limit=ConcurrencyLimitConfig(
                    limit=1, collision_strategy=strategy), description=description, tags=["nerflow"],
                work_pool_name=pool, job_variables=job_variables(pool), entrypoint_type=EntrypointType.MODULE_PATH)
            deployment_id = deployment.apply()
            if on_drift_of:
                monitor_deployments.apply_drift_trigger(client, deployment_id, name, on_drift_of)
            if cadence is None or create_schedule(client, deployment_id, cadence):
                return str(deployment_id), True
            existing = client.read_deployment(deployment_id)   # another `nerflow schedule NAME` created it first
        if cadence is not None:
            replace_schedule(client, existing.id, cadence)
        if on_drift_of:
            monitor_deployments.apply_drift_trigger(client, existing.id, name, on_drift_of)
        client.update_deployment(existing.id, DeploymentUpdate(   # last: this also resumes it
            parameters=parameters, description=description, concurrency_limit=1, paused=False,
            concurrency_options=ConcurrencyOptions(collision_strategy=strategy), work_pool_name=pool,
            job_variables=job_variables(pool), tags=sorted({*existing.tags, "nerflow"})))
        return str(existing.id), False


def replace_schedule(client, deployment_id, cadence: Cadence) -> None:
    """Give an existing deployment this cadence: paused and cleared first, then its one schedule updated in place
    (same id), any extra one deleted; created when it has none. The caller's update_deployment resumes it."""
    pause_and_clear(client, deployment_id)
    schedules = client.read_deployment_schedules(deployment_id)
    if schedules:
        client.update_deployment_schedule(deployment_id, schedules[0].id, active=True, schedule=cadence.schedule())
        for extra in schedules[1:]:
            client.delete_deployment_schedule(deployment_id, extra.id)
    else:
        create_schedule(client, deployment_id, cadence)


def create_schedule(client, deployment_id, cadence: Cadence) -> bool:
    """Create the deployment's one schedule, under the slug SCHEDULE_SLUG; False when it exists already. `apply`
    runs one at a time per name (a lock on the server), and Prefect keeps a schedule's slug unique within its
    deployment, so a schedule another client added meanwhile is refused (409) and updated: one schedule, never two
    firing twice."""
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        client.create_deployment_schedules(deployment_id, [(cadence.schedule(), True)], slug=SCHEDULE_SLUG)
    except PrefectHTTPStatusError as e:
        if e.response.status_code != 409:
            raise
        return False
    return True


def pause_and_clear(client, deployment_id) -> None:
    """Pause, and delete the runs its schedule made that have not started. Prefect's pause deletes them too, but a
    scheduler pass already under way still inserts its batch afterwards (seen on a busy CI host: 100 runs after a
    pause): so delete until the deployment has had no such run for `SCHEDULER_SETTLE_S` (at most 30 s)."""
    client.pause_deployment(deployment_id)
    started = quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < SCHEDULER_SETTLE_S and time.monotonic() - started < 30:
        stale = [r for r in runs_of(client, deployment_id, ["SCHEDULED"], "EXPECTED_START_TIME_ASC", 200)
                 if r.auto_scheduled and r.run_count == 0]   # 200: the API's page size limit
        for run in stale:
            client.delete_flow_run(run.id)
        if stale:
            quiet_since = time.monotonic()
        time.sleep(0.5)


def job_variables(pool: str | None) -> dict:
    """A worker's flow runs get nerflow's environment defaults (our log lines in the Prefect UI, library noise
    off), as a `nerflow` command sets them for itself and for the runs `nerflow serve` starts. Never a credential:
    Prefect stores job variables and shows them in its UI (checked, so a default added later cannot be one)."""
    from nerflow.deploy_guard import check_job_variables
    from nerflow.flows.console import ENV_DEFAULTS

    variables = {"env": dict(ENV_DEFAULTS)} if pool else {}
    check_job_variables(variables)
    return variables


def check_parameters(config: str, overrides: list[str], workdir: str) -> None:
    """Refuse a schedule a worker would refuse (nerflow.deploy_guard), with `workdir` as the only root."""
    from pathlib import Path

    from nerflow.deploy_guard import check_parameters as check
    from nerflow.flows.deploy_checks import schema_keys

    leaves, sections = schema_keys()
    check(config, overrides, workdir, cwd=Path.cwd(), roots=(Path(workdir),), known_keys=leaves, sections=sections)


def ensure_pool(client, pool: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        log.info("created the process work pool %s", pool)
    except ObjectAlreadyExists:
        pass


def find(client, name: str, flow: str = FLOW_NAME):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(f"{flow}/{name}")
    except ObjectNotFound:
        return None


def named(client, name: str) -> list:
    """The deployments a schedule NAME is: its retraining deployment, its monitoring one, or both."""
    from nerflow.config import ConfigError

    found = [d for d in (find(client, name, flow) for flow in FLOWS) if d is not None]
    if not found:
        known = ", ".join(sorted({d.name for d in list_all(client)})) or "none"
        raise ConfigError(f"no schedule named {name!r} (schedules: {known}; see `nerflow schedule ls`)")
    return found


def get(client, name: str):
    return named(client, name)[0]


def list_all(client) -> list:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOWS))))


def flow_of(deployment) -> str:
    return MONITOR_FLOW if deployment.entrypoint and "monitor" in deployment.entrypoint else FLOW_NAME


def runs_of(client, deployment_id, state_types: list[str], sort: str, limit: int) -> list:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(t) for t in state_types]))
    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                                 flow_run_filter=FlowRunFilter(state=state), sort=FlowRunSort(sort), limit=limit)


def set_paused(name: str, paused: bool) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for deployment in named(client, name):
            if paused:
                pause_and_clear(client, deployment.id)
            else:
                client.resume_deployment(deployment.id)


def delete(name: str) -> None:
    """Delete the schedule's deployments, and the drift trigger its retraining deployment owns."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for deployment in named(client, name):
            client.delete_resource_owned_automations(f"prefect.deployment.{deployment.id}")
            client.delete_deployment(deployment.id)
