"""Rerun from the Prefect UI (flows/rerun.py) on the team servers: a run that failed at `evaluate` is continued by a
flow run of the deployment `nerflow-rerun/rerun`, created through the Prefect API as the UI's Run button does, and
served by `nerflow serve`."""
from __future__ import annotations

import os
import subprocess
import sys

import httpx

from nerflow.graph import PIPELINE

from .conftest import MLFLOW_AUTH, PREFECT_AUTH
from .scheduling import (
    NERFLOW,
    Background,
    flow_run,
    make_project,
    nerflow,
    pipeline_runs,
    process_env,
    run_info,
    versions,
    wait_for,
)

FULL_RUN_S = 240   # as tests/team/test_schedules.py: generous for a busy 2-core CI host
# `nerflow run` with the evaluate stage's library function broken: the run fails at evaluate, nothing registered
FAIL_AT_EVALUATE = """
import sys
import nerflow.ner.evaluation as evaluate

def broken(*args, **kwargs):
    raise RuntimeError("injected failure in evaluate")

evaluate.evaluate_model = broken
from nerflow.flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_failed_at_evaluate_continues_from_the_rerun_deployment_in_the_same_mlflow_run(team, team_env,
                                                                                              tmp_path):
    api, mlflow_uri, model = team.prefect_api_url, team.mlflow_uri, "rerun-ui"
    cfg = make_project(tmp_path, model, epochs=2)
    env = process_env(team_env, tmp_path)
    failed = subprocess.run([sys.executable, "-c", FAIL_AT_EVALUATE, "run", cfg.name], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=FULL_RUN_S, stdin=subprocess.DEVNULL)
    assert failed.returncode != 0 and "injected failure in evaluate" in failed.stderr, failed.stderr[-3000:]
    (run,) = pipeline_runs(mlflow_uri, model)
    run_id = run["info"]["run_id"]
    before = run_info(mlflow_uri, run_id)
    assert before["status"] == "FAILED" and before["tags"]["failed_stage"] == "evaluate", before
    assert versions(mlflow_uri, model) == []

    server = Background([*NERFLOW, "serve"], tmp_path, env, tmp_path / "serve.log")
    try:
        rerun = wait_for(lambda: (r := httpx.get(f"{api}/deployments/name/nerflow-rerun/rerun",
                                                 auth=PREFECT_AUTH)).status_code == 200
                         and r.json(), 60, "`nerflow serve` to create the rerun deployment", server)
        assert rerun["work_pool_name"] is None and rerun["parameter_openapi_schema"]["required"] == ["run_id"]
        # the UI's Run button: a flow run of the deployment with what the person typed into its form
        made = httpx.post(f"{api}/deployments/{rerun['id']}/create_flow_run", auth=PREFECT_AUTH,
                          json={"parameters": {"run_id": run_id, "from_stage": "evaluate"}})
        made.raise_for_status()
        listed = nerflow(["schedule", "ls"], tmp_path, env)   # while the rerun runs
        assert "reruns from the Prefect UI: deployment nerflow-rerun/rerun, runs on `nerflow serve`" in \
            listed.stdout, listed.stdout + listed.stderr
        ended = wait_for(lambda: (r := flow_run(api, made.json()["id"]))["state"]["type"] in (
            "COMPLETED", "FAILED", "CRASHED", "CANCELLED") and r, FULL_RUN_S, "the rerun", server)
    finally:
        server.stop()
    assert ended["state"]["type"] == "COMPLETED", (ended["state"], server.tail())
    assert f"registered {model} version 1" in ended["state"]["message"], ended["state"]["message"]
    assert f"(MLflow run {run_id})" in ended["state"]["message"]
    said = flow_run_logs(api, ended["id"])   # in the Prefect UI, before the pipeline's child flow run starts
    assert f"continuing MLflow run {run_id} (FAILED) from evaluate" in said, said
    assert "recomputing here: evaluate, register, promote" in said and "train     reuse" in said, said
    after = run_info(mlflow_uri, run_id)   # the same MLflow run, one attempt more, finished
    assert after["status"] == "FINISHED" and after["tags"]["nerflow.attempts"] == "2" and not after["tags"].get(
        "failed_stage")
    assert {s: after["tags"][f"stage.{s}"] for s in PIPELINE.names} == {
        "validate": "reused", "tokenize": "reused", "train": "reused", "evaluate": "computed", "register": "computed",
        "promote": "computed"}
    assert len(pipeline_runs(mlflow_uri, model)) == 1
    (version,) = versions(mlflow_uri, model)
    assert version["run_id"] == run_id

    # From a work pool, as if the run's latest attempt had been on host `elsewhere`, whose worker polls its queue:
    # the worker of queue `default` that takes the rerun hands it over to `host-elsewhere` and ends, naming it
    pool = "rerun-pool"
    httpx.post(f"{mlflow_uri}/api/2.0/mlflow/runs/set-tag", auth=MLFLOW_AUTH,
               json={"run_id": run_id, "key": "nerflow.host", "value": "elsewhere"}).raise_for_status()
    httpx.post(f"{api}/work_pools/", auth=PREFECT_AUTH, json={"name": pool, "type": "process"}).raise_for_status()
    httpx.post(f"{api}/work_pools/{pool}/queues", auth=PREFECT_AUTH, json={"name": "host-elsewhere"}).raise_for_status()
    httpx.post(f"{api}/work_pools/{pool}/get_scheduled_flow_runs",   # what that host's worker does every poll
               auth=PREFECT_AUTH, json={"work_queue_names": ["host-elsewhere"]}).raise_for_status()
    wait_for(lambda: httpx.get(f"{api}/work_pools/{pool}/queues/host-elsewhere", auth=PREFECT_AUTH)
             .json()["last_polled"], 30, "the poll to be recorded")
    pooled = deploy_on_pool(api, pool)
    made = httpx.post(f"{api}/deployments/{pooled}/create_flow_run", auth=PREFECT_AUTH,
                      json={"parameters": {"run_id": run_id, "from_stage": "promote"}})
    made.raise_for_status()
    worker = subprocess.run([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--work-queue",
                             "default", "--run-once", "--limit", "1"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    handed = flow_run(api, made.json()["id"])
    assert handed["state"]["type"] == "COMPLETED", (handed["state"], worker.stdout[-3000:], worker.stderr[-3000:])
    assert handed["state"]["message"].startswith("handed over to host elsewhere: flow run "), handed["state"]
    (moved,) = [r for r in httpx.post(f"{api}/flow_runs/filter", auth=PREFECT_AUTH,
                                      json={"deployments": {"id": {"any_": [pooled]}}}).json()
                if r["id"] != handed["id"]]
    assert moved["work_queue_name"] == "host-elsewhere" and moved["state"]["type"] == "SCHEDULED"
    assert moved["parameters"] == {"run_id": run_id, "from_stage": "promote", "force_register": False}
    assert f"({moved['id']}) on work queue host-elsewhere of pool {pool}" in handed["state"]["message"]
    assert run_info(mlflow_uri, run_id)["tags"]["nerflow.attempts"] == "2"   # the hand-over ran nothing
    httpx.delete(f"{api}/deployments/{pooled}", auth=PREFECT_AUTH)   # with its runs


def deploy_on_pool(api: str, pool: str) -> str:
    """The rerun flow deployed on a process work pool, queue `default` (what prefect.yaml's `rerun` is)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from nerflow.flows.rerun import rerun_pipeline

    with temporary_settings(updates={PREFECT_API_URL: api,
                                     PREFECT_API_AUTH_STRING: os.environ["PREFECT_API_AUTH_STRING"]}):
        return str(rerun_pipeline.to_deployment(name="rerun-on-a-pool", work_pool_name=pool,
                                                entrypoint_type=EntrypointType.MODULE_PATH).apply())


def flow_run_logs(api: str, flow_run_id: str) -> str:
    r = httpx.post(f"{api}/logs/filter", auth=PREFECT_AUTH,
                   json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
    return "\n".join(line["message"] for line in r.raise_for_status().json())
