"""What `nerflow schedule ls` shows of the schedules' Prefect deployments (flows/deployments.py makes them): one row
per deployment with its cadence, state, collision strategy, drift trigger, next and last run."""
from __future__ import annotations

from nerflow.flows import deployments
from nerflow.flows.deployments import MONITOR_FLOW, flow_of


def rows() -> list[dict]:
    """One row per schedule: what `nerflow schedule ls` prints."""
    from prefect.client.orchestration import get_client

    out = []
    with get_client(sync_client=True) as client:
        for d in sorted(deployments.list_all(client), key=lambda d: (d.name, flow_of(d))):
            schedules = client.read_deployment_schedules(d.id)
            nxt = next_run(client, d.id)
            last = last_run(client, d.id)
            monitors = flow_of(d) == MONITOR_FLOW
            options = d.concurrency_options
            out.append({"name": d.name, "flow": flow_of(d), "id": str(d.id), "paused": bool(d.paused),
                        "collision": options.collision_strategy.value.lower() if options else None,
                        "kind": "monitor" if monitors else "retrain",
                        "model": d.parameters.get("model") if monitors else None,
                        "input": d.parameters.get("input") if monitors else None,
                        "triggers": [] if monitors else drift_triggers(client, d.id),
                        "schedule": describe(schedules[0].schedule) if schedules else None,
                        "active": bool(schedules and schedules[0].active and not d.paused),
                        "runs_on": f"work pool {d.work_pool_name}" if d.work_pool_name else "nerflow serve",
                        "config": d.parameters.get("config"), "overrides": d.parameters.get("overrides") or [],
                        "next_run": nxt.isoformat() if nxt else None,
                        "last_run": last})
    return out


def drift_triggers(client, deployment_id) -> list[str]:
    """What starts this deployment besides its schedule: the names of the automations it owns (its drift trigger)."""
    import contextlib

    with contextlib.suppress(Exception):   # a server without automations: none
        return sorted(a.name for a in client.read_resource_related_automations(f"prefect.deployment.{deployment_id}"))
    return []


def describe(schedule) -> str:
    if getattr(schedule, "cron", None):
        return f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    if getattr(schedule, "interval", None):
        return f"every {schedule.interval.total_seconds():g} s"
    return f"rrule {getattr(schedule, 'rrule', schedule)}"   # set in the Prefect UI


def next_run(client, deployment_id):
    runs = deployments.runs_of(client, deployment_id, ["SCHEDULED"], "EXPECTED_START_TIME_ASC", 1)
    return runs[0].next_scheduled_start_time if runs else None


def last_run(client, deployment_id) -> dict | None:
    ended = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]
    runs = deployments.runs_of(client, deployment_id, ended, "END_TIME_DESC", 1)
    if not runs:
        return None
    state = runs[0].state
    return {"state": state.name, "message": state.message, "flow_run_id": str(runs[0].id),
            "ended": runs[0].end_time.isoformat() if runs[0].end_time else None}
