"""prefect.yaml (the team route of `prefect deploy`) gives a worker's flow runs the environment a `nerflow` command
sets for itself: the two lists must not drift apart."""
from __future__ import annotations

from pathlib import Path

import yaml

from nerflow.flows.console import ENV_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]


def test_every_deployment_gets_nerflows_environment_and_every_schedule_one_run_at_a_time():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    schedules = [d for d in spec["deployments"] if d["name"] != "rerun"]
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
