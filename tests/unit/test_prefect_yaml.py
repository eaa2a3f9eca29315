"""prefect.yaml (the team route of `prefect deploy`) gives a worker's flow runs the environment a `nerflow` command
sets for itself: the two lists must not drift apart."""
from __future__ import annotations

from pathlib import Path

import yaml

from nerflow.flows.console import ENV_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]


def test_every_deployment_gets_nerflows_environment_and_one_run_at_a_time():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        assert deployment["work_pool"]["job_variables"]["env"] == ENV_DEFAULTS, deployment["name"]
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
        assert deployment["entrypoint"] == "flows/scheduled.py:scheduled_pipeline"
        assert (ROOT / deployment["parameters"]["config"]).is_file()
