"""Schedules on the team servers (PostgreSQL, `mlflow server`, `prefect server start`): created with `nerflow
schedule`, executed by `nerflow serve` and by Prefect process workers, read back through both servers' REST APIs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from nerflow.flows.errors import EXIT_UNAVAILABLE
from tests.integration.corpus import UNSEEN

from . import browser
from .conftest import MLFLOW_AUTH, PREFECT_AUTH
from .scheduling import (
    NERFLOW,
    Background,
    deployment,
    flow_run,
    flow_runs,
    make_project,
    nerflow,
    pipeline_runs,
    process_env,
    run_info,
    trigger,
    versions,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
FULL_RUN_S = 240      # a tiny full pipeline run takes ~30-40 s here alone; generous for a busy 2-core CI host
NOTHING_TO_DO_S = 30  # the cheap path: plan + one registry query (~3 s)


def serve(project: Path, env: dict, name: str, log: str) -> Background:
    return Background([*NERFLOW, "serve", name], project, env, project / log)


def finished_runs(api: str, deployment_id: str, since: float = 0.0) -> list[dict]:
    runs = flow_runs(api, deployment_id, ["COMPLETED", "FAILED", "CRASHED"])
    return [r for r in runs if r["end_time"] and _ts(r["end_time"]) >= since]


def _ts(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def schedule_state(api: str, name: str) -> dict:
    d = deployment(api, name)
    return {"paused": d["paused"], "active": [s["active"] for s in d["schedules"]], "id": d["id"]}


def scheduled_times(api: str, deployment_id: str) -> list[str]:
    return [r["expected_start_time"] for r in flow_runs(api, deployment_id, ["SCHEDULED"])
            if r["state"]["name"] == "Scheduled"]


def test_schedule_without_a_prefect_server_fails_at_once_with_the_commands_that_start_one(tmp_path):
    cfg = make_project(tmp_path, "no-server")
    env = {k: v for k, v in process_env(dict(os.environ), tmp_path).items() if k != "PREFECT_API_URL"}
    started = time.monotonic()
    result = nerflow(["schedule", str(cfg), "--interval", "60"], tmp_path, env)
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert time.monotonic() - started < 20
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "PREFECT_API_URL is not set" in errors[0] and "make team-up" in errors[0], \
        result.stderr


def test_serve_runs_the_schedule_then_nothing_to_do_then_a_data_change_registers_a_new_version(team, team_env,
                                                                                             tmp_path):
    """The issue's walk-through: one schedule (scheduled twice, kept once), a serve process trains and registers
    version 1; stopping serve leaves the schedule active; a serve whose runs cannot import torch ends the next run
    as "nothing to do"; paused, data changed, triggered: version 2 with a gate decision; resume; delete."""
    api, mlflow_uri, model = team.prefect_api_url, team.mlflow_uri, "sched-serve"
    # no F1 floor: the tiny model's version 1 becomes the first champion, so the model page has a history to show
    cfg = make_project(tmp_path, model, extra="promote: {min_f1: 0.0}\n")
    env = process_env(team_env, tmp_path)
    name = "tiny-every-5s"

    # scheduling the same name twice: one deployment, one schedule, no doubled runs
    first = nerflow(["schedule", cfg.name, "--interval", "7", "--name", name], tmp_path, env)
    assert first.returncode == 0 and "created schedule" in first.stdout, first.stderr
    again = nerflow(["schedule", cfg.name, "--interval", "5", "--name", name, "--json"], tmp_path, env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] is False
    state = schedule_state(api, name)
    assert state == {"paused": False, "active": [True], "id": state["id"]}
    # a doubled schedule would double the runs of the scheduler's first batch already: no need to wait for more
    times = wait_for(lambda: len(found := scheduled_times(api, state["id"])) >= 3 and found, 30,
                     "the scheduler to create runs")
    assert len(times) == len(set(times)), times
    gaps = {round(_ts(b) - _ts(a)) for a, b in zip(sorted(times), sorted(times)[1:])}
    assert gaps == {5}, gaps   # the replaced cadence, not the first one
    listed = json.loads(nerflow(["schedule", "ls", "--json"], tmp_path, env).stdout)
    assert [r["name"] for r in listed if r["name"] == name] == [name]

    # a serve process executes it: version 1, its metrics read back through MLflow's REST API
    server = serve(tmp_path, env, name, "serve-1.log")
    try:
        v1 = wait_for(lambda: versions(mlflow_uri, model), FULL_RUN_S, "version 1", server)[0]
        run = wait_for(lambda: run_info(mlflow_uri, v1["run_id"])["status"] == "FINISHED"
                       and run_info(mlflow_uri, v1["run_id"]), 60, "the MLflow run to finish", server)
        assert 0.0 <= run["metrics"]["test/f1"] <= 1.0 and "val/best_f1" in run["metrics"]
        assert run["tags"]["nerflow.logical_run"]
        # MLflow's Source names the schedule (not Prefect's engine.py), shown in full for a JOB; so does the name
        assert (run["tags"]["mlflow.source.type"], run["tags"]["mlflow.source.name"]) == \
            ("JOB", f"nerflow schedule {name}")
        assert f" · schedule {name} · " in run["tags"]["mlflow.runName"], run["tags"]["mlflow.runName"]
        first_run = wait_for(lambda: [r for r in finished_runs(api, state["id"]) if r["parent_task_run_id"] is None],
                             60, "the first scheduled run to end", server)
        assert first_run[0]["state"]["message"].startswith(f"registered {model} version 1"), first_run[0]["state"]
        # stopped while the next due run (the interval is 5 s) is in flight: Ctrl-C cancels it, so it ends with a
        # final state and keeps no concurrency slot (a run killed without one would, for up to 300 s)
        wait_for(lambda: flow_runs(api, state["id"], ["RUNNING"]), 30, "the next due run to start", server)
    finally:
        assert server.stop() is not None
    assert flow_runs(api, state["id"], ["RUNNING", "PENDING", "CANCELLING"]) == []
    state = schedule_state(api, name)
    assert state["paused"] is False and state["active"] == [True], "stopping serve paused the schedule"

    # unchanged data: the next scheduled run ends as "nothing to do", with torch unimportable in its process
    poison = tmp_path / "no-torch"
    (poison / "torch").mkdir(parents=True)
    (poison / "torch" / "__init__.py").write_text("raise ImportError('torch is unimportable in this test')\n")
    restarted = time.time()
    server = serve(tmp_path, {**env, "PYTHONPATH": str(poison)}, name, "serve-2.log")
    try:
        done = wait_for(lambda: [r for r in finished_runs(api, state["id"], restarted)
                                 if r["parent_task_run_id"] is None], NOTHING_TO_DO_S + 30,
                        "a scheduled run to end", server)
    finally:
        server.stop()
    assert done[0]["state"]["type"] == "COMPLETED", done[0]["state"]
    assert done[0]["state"]["message"].startswith(f"nothing to do: {model} version 1 was registered"), \
        done[0]["state"]["message"]
    assert all(r["state"]["type"] == "COMPLETED" for r in finished_runs(api, state["id"], restarted))
    assert "nothing to do" in run_info(mlflow_uri, v1["run_id"])["tags"]["nerflow.schedule.last_check"]
    assert len(versions(mlflow_uri, model)) == 1

    # paused; a data error, one run triggered by hand: it fails, and says so in one line (serve's terminal,
    # `schedule ls`); then the data fixed and changed, one more run: a full run, version 2 and the gate's decision
    paused = nerflow(["schedule", "pause", name], tmp_path, env)
    assert paused.returncode == 0, paused.stderr
    assert schedule_state(api, name)["paused"] is True
    assert scheduled_times(api, state["id"]) == []   # pausing removed the runs not yet started
    train = tmp_path / "data" / "train.txt"
    good = train.read_text()
    train.write_text(good + "Berlin LOCATION\n\n")
    bad_line = good.count("\n") + 1
    server = serve(tmp_path, env, name, "serve-3.log")
    try:
        failing = trigger(api, name)
        failed = wait_for(lambda: flow_run(api, failing)["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED",
                                                                               "CANCELLED")
                          and flow_run(api, failing), FULL_RUN_S, "the run with bad data", server)
        listed = nerflow(["schedule", "ls"], tmp_path, env)
        train.write_text(good + "".join(f"{w} {t}\n" for w, t in UNSEEN[0]) + "\n")
        flow_run_id = trigger(api, name)
        ended = wait_for(lambda: flow_run(api, flow_run_id)["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED",
                                                                                  "CANCELLED")
                         and flow_run(api, flow_run_id), FULL_RUN_S, "the triggered run", server)
    finally:
        server.stop()
    assert failed["state"]["type"] == "FAILED", failed["state"]
    problem = rf"train\.txt:{bad_line}: \[tags_well_formed\] tag 'LOCATION'"
    # the Prefect UI keeps its own record: the exception as the state's message
    assert re.search(rf"ValidationFailed: data validation failed.*\n.*{problem}", failed["state"]["message"])
    output = server.log.read_text(errors="replace")
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(problem, errors[0]), output[-6000:]
    assert "Traceback" not in output and "Finished in state Failed" not in output, output[-6000:]
    rows = listed.stdout.splitlines()
    row = next(i for i, line in enumerate(rows) if line.startswith(f"{name} "))
    assert rows[row + 2].endswith(f"; last Failed: {errors[0]}"), listed.stdout   # its third line: next; last
    assert ended["state"]["type"] == "COMPLETED", ended["state"]
    assert ended["state"]["message"].startswith(f"registered {model} version 2"), ended["state"]["message"]
    v2 = versions(mlflow_uri, model)[-1]
    assert v2["version"] == "2"
    assert {t["key"]: t["value"] for t in v2["tags"]}["nerflow.promotion"] in ("accepted", "rejected")

    # the same runs in both UIs, in a real browser: the first scheduled run and its deployment in Prefect's, its
    # MLflow run in the experiment's training view, the champion history on the model's page
    look_at_both_uis(team, model, first_run[0], name, v1["run_id"])

    # resume, then delete
    assert nerflow(["schedule", "resume", name], tmp_path, env).returncode == 0
    assert schedule_state(api, name) == {"paused": False, "active": [True], "id": state["id"]}
    assert nerflow(["schedule", "delete", name], tmp_path, env).returncode == 0
    assert deployment(api, name) is None
    missing = nerflow(["schedule", "pause", name], tmp_path, env)
    assert missing.returncode == 2 and "no schedule named" in missing.stderr


def look_at_both_uis(team, model: str, scheduled: dict, deployment_name: str, run_id: str) -> None:
    """tests/team/browser.py's checks of the Prefect and MLflow UIs (screenshots in tests/team/out/screenshots/)."""
    mlflow_uri = team.mlflow_uri
    version = httpx.get(f"{mlflow_uri}/api/2.0/mlflow/registered-models/alias", auth=MLFLOW_AUTH,
                        params={"name": model, "alias": "champion"}).raise_for_status().json()["model_version"]
    run = httpx.get(f"{mlflow_uri}/api/2.0/mlflow/runs/get", auth=MLFLOW_AUTH,
                    params={"run_id": run_id}).raise_for_status().json()
    experiment_id, run_name = run["run"]["info"]["experiment_id"], run["run"]["info"]["run_name"]
    experiment = httpx.get(f"{mlflow_uri}/api/2.0/mlflow/experiments/get", auth=MLFLOW_AUTH,
                           params={"experiment_id": experiment_id}).raise_for_status().json()["experiment"]
    with browser.browser("schedules") as page:
        browser.check_prefect_ui(page, team.prefect_api_url.removesuffix("/api"), scheduled, deployment_name)
        # the kind nerflow gives its experiments (tasks/tracking.py): model training, not GenAI
        assert {t["key"]: t["value"] for t in experiment.get("tags", [])}.get("mlflow.experimentKind") == \
            "custom_model_development", experiment
        browser.check_mlflow_ui(page, mlflow_uri, experiment_id, run_name, model, version["version"])


def test_two_workers_of_a_pool_register_one_version(team, team_env, tmp_path):
    """Two workers on a process work pool, each with its own stage cache (two hosts, as far as nerflow can
    tell), and two deployments of the same config due at once: each run is executed once, by one worker, and
    one version is registered; the other run waited for the first on the Prefect server's lock, then found the
    version in the registry instead of retraining."""
    api, mlflow_uri, model, pool = team.prefect_api_url, team.mlflow_uri, "sched-pool", "tiny-pool"
    cfg = make_project(tmp_path / "checkout", model)
    project = cfg.parent
    env = process_env(team_env, project)
    for name in ("pool-a", "pool-b"):   # a yearly cron: nothing fires by itself during the test
        made = nerflow(["schedule", cfg.name, "--cron", "0 0 1 1 *", "--name", name, "--pool", pool], project, env)
        assert made.returncode == 0, made.stderr
        assert deployment(api, name)["work_pool_name"] == pool
    workers = []
    try:
        for i in (1, 2):
            host = tmp_path / f"host-{i}"
            host.mkdir()
            workers.append(Background([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                                       "--name", f"worker-{i}"], host,
                                      # a plain worker starts runs in a temporary directory: the checkout (the
                                      # schedules' workdir) is a root it must be given (flows/deploy_checks.py)
                                      {**env, "NERFLOW_CACHE_DIR": str(host / "cache"),
                                       "NERFLOW_WORKDIR_ROOTS": str(project)}, host / "worker.log"))
        wait_for(lambda: len(httpx.post(f"{api}/work_pools/{pool}/workers/filter", auth=PREFECT_AUTH,
                                        json={}).json()) == 2, 60,
                 "both workers to be online", *workers)
        ids = [trigger(api, "pool-a"), trigger(api, "pool-b")]
        ended = wait_for(lambda: all(flow_run(api, i)["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED",
                                                                             "CANCELLED") for i in ids)
                         and [flow_run(api, i) for i in ids], FULL_RUN_S * 2, "both runs", *workers)
    finally:
        Background.stop_all(workers, timeout=10)   # their runs have ended; a worker sometimes ignores SIGINT
    assert [r["state"]["type"] for r in ended] == ["COMPLETED", "COMPLETED"], [r["state"] for r in ended]
    messages = sorted(r["state"]["message"] for r in ended)
    assert messages[0].startswith("nothing to do") and messages[1].startswith(f"registered {model} version 1"), \
        messages
    assert [r["run_count"] for r in ended] == [1, 1]   # neither run was executed twice
    assert len(versions(mlflow_uri, model)) == 1
    # the run lock is the server's (the two workers share no file: each has its own cache dir), and its holders
    # deleted its limit when they were done (tasks/global_locks.py): none is left behind for this model's run
    limits = httpx.post(f"{api}/v2/concurrency_limits/filter", auth=PREFECT_AUTH, json={}).json()
    (run,) = pipeline_runs(mlflow_uri, model)   # the second never opened an MLflow run of its own
    logical_run = next(t["value"] for t in run["data"]["tags"] if t["key"] == "nerflow.logical_run")
    assert not [limit["name"] for limit in limits if logical_run[:12] in limit["name"]], limits


def test_a_cancel_from_the_prefect_ui_stops_training_cleanly(team, team_env, tmp_path):
    """The UI's Cancel sets the flow run CANCELLING; the runner then stops the run's process. Training takes the
    stop at the next step: a checkpoint is written, the MLflow run ends KILLED and the flow run Cancelled, and
    nothing is registered."""
    api, mlflow_uri, model = team.prefect_api_url, team.mlflow_uri, "sched-cancel"
    cfg = make_project(tmp_path, model, epochs=2000)
    env = process_env(team_env, tmp_path)
    made = nerflow(["schedule", cfg.name, "train.checkpoint_every=20", "--cron", "0 0 1 1 *", "--name",
                    "cancel-me"], tmp_path, env)
    assert made.returncode == 0, made.stderr
    server = serve(tmp_path, env, "cancel-me", "serve.log")
    try:
        flow_run_id = trigger(api, "cancel-me")
        work = tmp_path / "cache" / "train"
        wait_for(lambda: any(work.glob("*.work/checkpoints/step-*")), FULL_RUN_S,
                 "training to write its first checkpoint", server)
        httpx.post(f"{api}/flow_runs/{flow_run_id}/set_state", auth=PREFECT_AUTH,
                   json={"state": {"type": "CANCELLING", "message": "cancelled from the UI"}}).raise_for_status()
        ended = wait_for(lambda: flow_run(api, flow_run_id)["state"]["type"] in ("CANCELLED", "COMPLETED", "FAILED",
                                                                                  "CRASHED")
                         and flow_run(api, flow_run_id), 90, "the run to stop", server)
        # the flow run can read Cancelled a moment before the stopped process has ended its MLflow run: poll, with a
        # deadline (a fixed 2 s wait failed once on a loaded machine)
        runs = wait_for(lambda: (found := pipeline_runs(mlflow_uri, model)) and all(
            r["info"]["status"] != "RUNNING" for r in found) and found, 30, "the MLflow run to end", server)
    finally:
        server.stop()
    assert ended["state"]["type"] == "CANCELLED", ended["state"]
    assert [r["info"]["status"] for r in runs] == ["KILLED"], runs
    assert any(work.glob("*.work/checkpoints/step-*")), "no checkpoint left to resume from"
    assert versions(mlflow_uri, model) == []


def test_prefect_yaml_deploys_the_team_route_to_a_process_pool(team, team_env, tmp_path):
    """`prefect deploy --all` from the checkout: the deployments of prefect.yaml land on the process pool
    `nerflow`, the schedules one run at a time, with their schedules and the checkout as working directory; the
    rerun deployment with its Run form and no schedule."""
    api = team.prefect_api_url
    env = {**process_env(team_env, tmp_path), "PWD": str(ROOT)}
    made = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "nerflow", "--type", "process"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 or "already exists" in made.stdout + made.stderr, made.stderr
    deployed = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    try:
        for name, schedule in (("quickstart-nightly", {"cron": "0 3 * * *"}), ("quickstart-on-new-data",
                                                                                {"interval": 600.0})):
            d = deployment(api, name)
            assert d["work_pool_name"] == "nerflow"
            assert d["entrypoint"] == "flows/scheduled.py:scheduled_pipeline"
            assert d["parameters"]["config"] == "configs/quickstart.yaml"
            assert d["global_concurrency_limit"]["limit"] == 1
            assert d["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
            assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
            assert [{k: s["schedule"][k] for k in schedule} for s in d["schedules"]] == [schedule]
            assert d["job_variables"]["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "nerflow"
        rerun = httpx.get(f"{api}/deployments/name/nerflow-rerun/rerun", auth=PREFECT_AUTH).raise_for_status().json()
        assert rerun["work_pool_name"] == "nerflow" and rerun["work_queue_name"] == "default"
        assert rerun["entrypoint"] == "flows/rerun.py:rerun_pipeline" and rerun["schedules"] == []
        assert rerun["parameter_openapi_schema"]["required"] == ["run_id"]
        # the drift pair: a check on a (paused) schedule, and a retraining whose trigger is a Prefect automation
        check = httpx.get(f"{api}/deployments/name/nerflow-monitor/quickstart-drift", auth=PREFECT_AUTH) \
            .raise_for_status().json()
        assert check["entrypoint"] == "flows/monitor_flow.py:monitor_drift" and check["work_pool_name"] == "nerflow"
        assert [s["active"] for s in check["schedules"]] == [False]
        retrain = deployment(api, "quickstart-drift")
        assert retrain["concurrency_options"]["collision_strategy"] == "ENQUEUE" and retrain["schedules"] == []
        (automation,) = httpx.get(f"{api}/automations/related-to/prefect.deployment.{retrain['id']}",
                                  auth=PREFECT_AUTH).raise_for_status().json()
        assert automation["trigger"]["expect"] == ["nerflow.drift.detected"]
        assert automation["trigger"]["match"] == {"prefect.resource.id": "nerflow.model.nerflow-quickstart"}
        (action,) = automation["actions"]
        assert action["type"] == "run-deployment" and action["deployment_id"] == retrain["id"]
        assert action["parameters"] is None
    finally:
        for name in ("quickstart-nightly", "quickstart-on-new-data", "quickstart-drift"):
            if (d := deployment(api, name)) is not None:
                httpx.delete(f"{api}/automations/owned-by/prefect.deployment.{d['id']}", auth=PREFECT_AUTH)
                httpx.delete(f"{api}/deployments/{d['id']}", auth=PREFECT_AUTH)
        if (c := httpx.get(f"{api}/deployments/name/nerflow-monitor/quickstart-drift", auth=PREFECT_AUTH)) \
                .status_code == 200:
            httpx.delete(f"{api}/deployments/{c.json()['id']}", auth=PREFECT_AUTH)
        if (r := httpx.get(f"{api}/deployments/name/nerflow-rerun/rerun", auth=PREFECT_AUTH)).status_code == 200:
            httpx.delete(f"{api}/deployments/{r.json()['id']}", auth=PREFECT_AUTH)
