"""prefect.yaml (the team route of `prefect deploy`) gives a worker's flow runs the environment a `nerflow` command
sets for itself: the two lists must not drift apart."""
from __future__ import annotations

from pathlib import Path

import yaml

from nerflow.flows.console import ENV_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]


def test_every_deployment_gets_nerflows_environment_and_every_schedule_one_run_at_a_time():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    schedules = [d for d in spec["deployments"] if d["name"] not in ("rerun", "quickstart-drift")]
    (rerun,) = [d for d in spec["deployments"] if d["name"] == "rerun"]
    assert schedules
    for deployment in spec["deployments"]:
        assert deployment["work_pool"]["job_variables"]["env"] == ENV_DEFAULTS, deployment["name"]
    for deployment in schedules:
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
        assert deployment["entrypoint"] == "flows/scheduled.py:scheduled_pipeline"
        assert (ROOT / deployment["parameters"]["config"]).is_file()
    # reruns of different runs may run at once (one logical run at a time is the pipeline's own lock); no schedule;
    # the default queue: any worker takes it, then it moves to the run's host queue (flows/rerun.py)
    assert rerun["entrypoint"] == "flows/rerun.py:rerun_pipeline"
    assert "concurrency_limit" not in rerun and not rerun.get("schedules")
    assert rerun["work_pool"]["work_queue_name"] == "default"


def test_the_drift_pair_checks_on_a_schedule_and_retrains_on_its_event_with_its_own_parameters():
    """The drift loop of prefect.yaml: what `nerflow schedule CONFIG --monitor INPUT` makes (one name, two flows)."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from pydantic import TypeAdapter

    from nerflow.flows.monitor_flow import EVENT, resource_id

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    check, retrain = [d for d in spec["deployments"] if d["name"] == "quickstart-drift"]
    assert check["entrypoint"] == "flows/monitor_flow.py:monitor_drift"
    assert check["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert check["parameters"]["model"] == "models:/nerflow-quickstart@champion" and check["schedules"]
    assert retrain["entrypoint"] == "flows/scheduled.py:scheduled_pipeline" and not retrain.get("schedules")
    assert (ROOT / retrain["parameters"]["config"]).is_file()
    # a drift event queues behind a running retraining, never cancelled
    assert retrain["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    (trigger,) = [TypeAdapter(DeploymentEventTrigger).validate_python(t) for t in retrain["triggers"]]
    assert trigger.expect == {EVENT} and trigger.parameters is None   # the deployment's parameters, not the event's
    assert trigger.match.root == {"prefect.resource.id": resource_id("nerflow-quickstart")}
    assert yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())["registry"]["model_name"] == \
        "nerflow-quickstart"
