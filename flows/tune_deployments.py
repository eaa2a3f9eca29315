"""A study spread over a work pool: `nerflow tune ... --pool POOL --workers K` creates (or updates) the deployment
`nerflow-tune/STUDY` of the tuning flow on POOL and starts K runs of it; each run, on whichever worker picks it
up, asks the shared storage (the workers' NERFLOW_TUNE_STORAGE: the team's PostgreSQL) for trials until the study
has its N, so the workers pull trials of one study and none runs twice. The command waits for the runs and prints
the study as the storage has it.

The deployment's parameters are the command's (config path, overrides, space path, study name, counts, working
directory): the flow checks them first (nerflow.tune_guard) and `nerflow worker` runs only nerflow's flows. No
schedule: a study is started on request; `prefect deployment run nerflow-tune/STUDY` starts one more worker's run.
"""
from __future__ import annotations

import logging
import time

from nerflow.flows import deployments

log = logging.getLogger("nerflow.tune")
FLOW_NAME = "nerflow-tune"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def submit(study: str, parameters: dict, pool: str, workers: int) -> list[str]:
    """Apply `nerflow-tune/STUDY` on `pool` with `parameters` and start `workers` runs of it: their ids."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.deployments.runner import EntrypointType

    from nerflow.flows.tune_flow import tune

    deployments.require_server()
    with get_client(sync_client=True) as client:
        deployments.ensure_pool(client, pool)
        existing = deployments.find(client, study, FLOW_NAME)
        description = (f"nerflow tune {parameters['config']} {' '.join(parameters['overrides'])}: an Optuna study "
                       f"of {parameters['trials']} trials shared by every run of this deployment")
        if existing is None:
            deployment_id = tune.to_deployment(
                name=study, parameters=parameters, description=description, tags=["nerflow", "tune"],
                work_pool_name=pool, job_variables=deployments.job_variables(pool),
                entrypoint_type=EntrypointType.MODULE_PATH).apply()
        else:
            deployment_id = existing.id
            client.update_deployment(existing.id, DeploymentUpdate(
                parameters=parameters, description=description, work_pool_name=pool, paused=False,
                job_variables=deployments.job_variables(pool)))
        runs = [client.create_flow_run_from_deployment(deployment_id, tags=["nerflow", "tune"])
                for _ in range(workers)]
    return [str(r.id) for r in runs]


def wait(flow_run_ids: list[str], poll_s: float = 2.0, timeout_s: float | None = None) -> dict[str, str]:
    """Each run's final state name, once all have one; a line whenever a run changes state."""
    from prefect.client.orchestration import get_client

    seen: dict[str, str] = {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            for run_id in flow_run_ids:
                state = client.read_flow_run(run_id).state
                name = (state.type.value if state else "PENDING")
                if seen.get(run_id) != name:
                    log.info("tuning run %s: %s", run_id[:8], state.name if state else "Pending")
                    seen[run_id] = name
            if all(s in FINAL for s in seen.values()):
                return seen
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"tuning runs still going after {timeout_s:g} s: {seen}")
            time.sleep(poll_s)
