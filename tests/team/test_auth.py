"""Authentication on the team servers, as `make team-up` starts them (infra/team.py): MLflow's basic-auth app and
Prefect's API auth string refuse a request without credentials or with a wrong password, their health endpoints
aside; each server logs into PostgreSQL as its own role; no secret is on a server's command line; and `nerflow`
says in one line which server refused the credentials and what to set."""
from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import mlflow
import psycopg2
import pytest
from mlflow.exceptions import MlflowException

from nerflow.flows import errors

from .conftest import MLFLOW_AUTH, PREFECT_AUTH
from .test_team_kept import server_processes

NERFLOW = [sys.executable, "-m", "nerflow.flows.cli"]
WRONG = "not-the-password"


def statuses(url: str, right: httpx.Auth, wrong: tuple[str, str], method: str = "GET", **kw) -> dict[str, int]:
    return {who: httpx.request(method, url, timeout=30, auth=auth, **kw).status_code
            for who, auth in (("nobody", None), ("wrong", wrong), ("team", right))}


def test_mlflow_refuses_requests_without_credentials_or_with_a_wrong_password(team, monkeypatch):
    base, wrong = team.mlflow_uri, (team.env["MLFLOW_TRACKING_USERNAME"], WRONG)
    refused = {"nobody": 401, "wrong": 401, "team": 200}
    # the REST API (reads and writes), the proxied artifact store, the UI page
    assert statuses(f"{base}/api/2.0/mlflow/experiments/search", MLFLOW_AUTH, wrong,
                    params={"max_results": 1}) == refused
    assert statuses(f"{base}/api/2.0/mlflow/registered-models/search", MLFLOW_AUTH, wrong) == refused
    assert statuses(f"{base}/api/2.0/mlflow/experiments/create", MLFLOW_AUTH, wrong, "POST",
                    json={"name": "auth-write"}) == refused
    assert statuses(f"{base}/api/2.0/mlflow-artifacts/artifacts", MLFLOW_AUTH, wrong) == refused
    assert statuses(f"{base}/", MLFLOW_AUTH, wrong) == refused
    assert httpx.get(f"{base}/health", timeout=30).status_code == 200   # for probes: no credentials needed
    # MLflow's own client, with the password of the environment (as nerflow's processes use it)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WRONG)
    with pytest.raises(MlflowException) as refusal:
        mlflow.MlflowClient(base).search_experiments(max_results=1)
    assert refusal.value.error_code == "UNAUTHENTICATED"


def test_prefect_refuses_requests_without_the_auth_string_or_with_a_wrong_one(team):
    api, wrong = team.prefect_api_url, (team.env["PREFECT_API_AUTH_STRING"].split(":")[0], WRONG)
    refused = {"nobody": 401, "wrong": 401, "team": 200}
    assert statuses(f"{api}/flows/filter", PREFECT_AUTH, wrong, "POST", json={}) == refused
    assert statuses(f"{api}/deployments/filter", PREFECT_AUTH, wrong, "POST", json={}) == refused
    assert statuses(f"{api}/admin/settings", PREFECT_AUTH, wrong) == refused
    assert statuses(f"{api}/flows/", PREFECT_AUTH, wrong, "POST", json={"name": "auth-write"}) == \
        {"nobody": 401, "wrong": 401, "team": 201}
    for probe in ("health", "ready"):   # for probes: no credentials needed
        assert httpx.get(f"{api}/{probe}", timeout=30).status_code == 200, probe


def test_each_server_logs_into_postgresql_as_its_own_role(team):
    """mlflow and prefect own their databases and cannot open each other's; neither is a superuser; pg_trgm (which
    Prefect's migrations need) was created by the bootstrap superuser."""
    for role, other in (("mlflow", "prefect"), ("prefect", "mlflow")):
        with psycopg2.connect(team.postgres_url(role)) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user, rolsuper, pg_get_userbyid(datdba) FROM pg_roles, pg_database "
                        "WHERE rolname = current_user AND datname = current_database()")
            assert cur.fetchall() == [(role, False, role)]
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(team.postgres_url(role).rsplit("/", 1)[0] + f"/{other}")
    with psycopg2.connect(team.postgres_url("prefect")) as conn, conn.cursor() as cur:
        cur.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cur.fetchall() == [("pg_trgm",)]
    conn.close()


def test_no_secret_is_on_a_servers_command_line(team):
    """ps shows every user the command lines: the secrets go by environment (infra/team.py)."""
    lines = [" ".join(p.cmdline()) for p in server_processes(team.state)]
    assert len(lines) >= 3
    for name, secret in team.state["secrets"].items():
        assert not [line for line in lines if secret in line], name


def test_nerflow_names_the_server_that_refused_the_credentials_in_one_line(team, team_env, tmp_path):
    """Exit 4 and one `error:` line naming the server and what to set, not "cannot reach" (exit 3)."""
    env = {**team_env, "PREFECT_HOME": str(tmp_path / "prefect-home"), "MLFLOW_TRACKING_PASSWORD": WRONG}
    models = subprocess.run([*NERFLOW, "models"], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert (models.returncode, models.stderr.splitlines()) == (4, [
        f"error: MLflow at {team.mlflow_uri} refused the credentials (401): set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD"]), models.stderr
    del env["PREFECT_API_AUTH_STRING"]
    schedules = subprocess.run([*NERFLOW, "schedule", "ls"], env=env, cwd=tmp_path, capture_output=True,
                               text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert (schedules.returncode, schedules.stderr.splitlines()) == (4, [
        f"error: Prefect at {team.prefect_api_url} refused the credentials (401): set PREFECT_API_AUTH_STRING"]), \
        schedules.stderr


def test_an_account_without_the_permission_is_told_so_in_one_line(team, monkeypatch):
    """A user the admin creates (docs/team.md, "Security") reads by default_permission READ but may not write to the
    admin's experiment: MLflow answers 403, and nerflow's line names the user and what to set (exit 4)."""
    base, user = team.mlflow_uri, f"reader-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{base}/api/2.0/mlflow/users/create", auth=MLFLOW_AUTH, timeout=30,
                      json={"username": user, "password": "a-reader-password"})
    assert made.status_code == 200, made.text
    experiment = mlflow.MlflowClient(base).create_experiment(f"admins-{user}")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "a-reader-password")
    reader = mlflow.MlflowClient(base)
    assert reader.get_experiment(experiment).name == f"admins-{user}"
    with pytest.raises(MlflowException) as refusal:
        reader.set_experiment_tag(experiment, "written", "by a reader")
    assert errors.classify(refusal.value) == errors.EXIT_REFUSED
    assert errors.message(refusal.value, errors.EXIT_REFUSED) == (
        f"error: MLflow at {base} refused the credentials (403): user {user!r} may not do this; set "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account that may")
