"""The deployments `nerflow schedule CONFIG --monitor INPUT` adds (flows/commands/schedule.py): the monitoring
deployment `nerflow-monitor/NAME` (flows/monitor_flow.py, on the schedule's cadence) and the drift trigger of the
retraining deployment `nerflow-scheduled/NAME` (flows/deployments.py), a Prefect automation that runs it when the
model's `nerflow.drift.detected` event arrives. prefect.yaml declares the same pair for `prefect deploy`.
"""
from __future__ import annotations

from nerflow.flows.deployments import (
    MONITOR_FLOW,
    Cadence,
    create_schedule,
    ensure_pool,
    find,
    job_variables,
    replace_schedule,
)


def model_name_of(model_uri: str) -> str:
    """The registered model a `models:/NAME@ALIAS` or `models:/NAME/VERSION` URI names."""
    rest = model_uri.removeprefix("models:/")
    return rest.split("@", 1)[0] if "@" in rest else rest.split("/", 1)[0]


def drift_trigger(name: str, model_name: str):
    """The retraining deployment's trigger: any `nerflow.drift.detected` event of the model starts one run with the
    deployment's own parameters (`parameters=None`): nothing in the event's payload reaches the run."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from nerflow.flows.monitor_flow import EVENT, resource_id

    return DeploymentEventTrigger(
        name=f"{name}: retrain on drift of {model_name}", expect={EVENT},
        match={"prefect.resource.id": resource_id(model_name)}, posture="Reactive", threshold=1,
        parameters=None, description=f"a drift check of {model_name} found drift (nerflow-monitor/{name}): run "
                                     f"nerflow-scheduled/{name} with its own parameters")


def drift_model(client, deployment_id) -> str | None:
    """The registered model whose drift event starts this deployment (its drift trigger), or None."""
    from nerflow.flows.monitor_flow import EVENT, resource_id

    prefix = resource_id("")
    for automation in client.read_resource_related_automations(f"prefect.deployment.{deployment_id}"):
        trigger = automation.trigger
        if EVENT in (getattr(trigger, "expect", None) or ()):
            watched = (trigger.match.model_dump() or {}).get("prefect.resource.id", "")
            if isinstance(watched, str) and watched.startswith(prefix):
                return watched.removeprefix(prefix)
    return None


def apply_drift_trigger(client, deployment_id, name: str, model_name: str) -> None:
    """Replace the automations the deployment owns with its drift trigger (as `prefect deploy` does with a
    deployment's `triggers:`: Prefect identifies a trigger by its owner only)."""
    client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
    trigger = drift_trigger(name, model_name)
    trigger.set_deployment_id(deployment_id)
    client.create_automation(trigger.as_automation())


def apply_monitor(name: str, model_uri: str, source: str, overrides: list[str], workdir: str, cadence: Cadence,
                  pool: str | None) -> tuple[str, bool]:
    """Create or update the monitoring deployment `nerflow-monitor/NAME` (flows/monitor_flow.py) and its one
    schedule. A check due while one runs is cancelled (the next one reads the same folder, later)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.deployments.runner import EntrypointType

    from nerflow.flows.monitor_flow import monitor_drift

    parameters = {"model": model_uri, "input": source, "overrides": list(overrides), "workdir": workdir}
    description = (f"drift check of {model_uri} on {source}: emits nerflow.drift.detected when drift starts, which "
                   f"starts nerflow-scheduled/{name}")
    cancel = ConcurrencyLimitStrategy.CANCEL_NEW
    with get_client(sync_client=True) as client:
        if pool:
            ensure_pool(client, pool)
        existing = find(client, name, MONITOR_FLOW)
        if existing is None:
            deployment_id = monitor_drift.to_deployment(
                name=name, parameters=parameters, schedule=None, concurrency_limit=ConcurrencyLimitConfig(
                    limit=1, collision_strategy=cancel), description=description, tags=["nerflow"],
                work_pool_name=pool, job_variables=job_variables(pool),
                entrypoint_type=EntrypointType.MODULE_PATH).apply()
            if create_schedule(client, deployment_id, cadence):
                return str(deployment_id), True
            existing = client.read_deployment(deployment_id)
        replace_schedule(client, existing.id, cadence)
        client.update_deployment(existing.id, DeploymentUpdate(
            parameters=parameters, description=description, concurrency_limit=1, paused=False,
            concurrency_options=ConcurrencyOptions(collision_strategy=cancel), work_pool_name=pool,
            job_variables=job_variables(pool), tags=sorted({*existing.tags, "nerflow"})))
        return str(existing.id), False


def check_monitor_parameters(model_uri: str, source: str, overrides: list[str], workdir: str) -> None:
    """Refuse a drift check a worker would refuse (nerflow.deploy_guard): the input inside `workdir`, or inside a
    root of NERFLOW_WORKDIR_ROOTS when this shell sets it (a capture folder outside the checkout, such as
    /var/lib/nerflow/capture, which the workers' roots must then include too)."""
    import os
    from pathlib import Path

    from nerflow.deploy_guard import WORKDIR_ROOTS_ENV
    from nerflow.deploy_guard import check_monitor_parameters as check
    from nerflow.flows.deploy_checks import schema_keys

    leaves, sections = schema_keys()
    roots = (Path(workdir), *(Path(r) for r in os.environ.get(WORKDIR_ROOTS_ENV, "").split(os.pathsep) if r.strip()))
    check(model_uri, source, overrides, workdir, cwd=Path.cwd(), roots=roots, known_keys=leaves, sections=sections)
