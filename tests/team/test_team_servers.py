"""The team servers infra/team.py starts are real: MLflow on PostgreSQL with proxied artifacts, Prefect on
PostgreSQL, both on 127.0.0.1 only; MLflow survives a kill and restart; a new team that fails to start leaves
nothing behind. `down` and `up` keeping a team's data, and `wipe`: tests/team/test_team_kept.py."""
from __future__ import annotations

import json
import os
import socket
import stat
import uuid
from pathlib import Path

import httpx
import mlflow
import psutil
import psycopg2
import pytest

from .conftest import PREFECT_AUTH, TeamServers, team_module


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_mlflow_experiment_model_and_proxied_artifact(team, tmp_path):
    client = mlflow.MlflowClient(team.mlflow_uri)
    exp_id = client.create_experiment(unique("team-exp"))
    model = client.create_registered_model(unique("team-model"))
    assert client.get_registered_model(model.name).name == model.name

    run = client.create_run(exp_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "artifacts must go through the server's proxy"
    (tmp_path / "note.txt").write_text("proxied\n")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    back = client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path / "back"))
    assert Path(back).read_text() == "proxied\n"
    assert [p.read_text() for p in (team.dir / "artifacts").rglob("note.txt")] == ["proxied\n"]


def test_prefect_health_and_a_flow_over_rest_stored_in_postgresql(team):
    with httpx.Client(base_url=team.prefect_api_url, auth=PREFECT_AUTH, timeout=30) as http:
        assert http.get("/health").json() is True
        created = http.post("/flows/", json={"name": unique("team-flow")})
        assert created.status_code in (200, 201), created.text
        read = http.get(f"/flows/{created.json()['id']}")
        assert read.status_code == 200 and read.json()["name"] == created.json()["name"]
    with psycopg2.connect(team.postgres_url("prefect")) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM flow WHERE id = %s", (created.json()["id"],))
        assert cur.fetchall() == [(created.json()["name"],)]


def test_prefect_runs_fast_service_loops(team):
    """fast_services=True: the scheduler looks for due runs every 2 s (or as the environment says), not 60 s."""
    wanted = float(os.environ.get("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", 2))
    settings = httpx.get(f"{team.prefect_api_url}/admin/settings", auth=PREFECT_AUTH, timeout=30).json()
    assert settings["server"]["services"]["scheduler"]["loop_seconds"] == wanted


def test_prefect_ui_calls_this_servers_own_api(team):
    """The UI (as `make team-up` starts it) asks /ui-settings where its API is: this server's address, not
    Prefect's default 127.0.0.1:4200, which answers nothing here ("Can't connect to Server API"); no Cloud toasts."""
    base = team.prefect_api_url.removesuffix("/api")
    assert httpx.get(f"{base}/ui-settings", timeout=30).json()["api_url"] == team.prefect_api_url
    ui = httpx.get(f"{team.prefect_api_url}/admin/settings", auth=PREFECT_AUTH, timeout=30).json()["server"]["ui"]
    assert ui["enabled"] is True and ui["show_promotional_content"] is False
    page = httpx.get(f"{base}/runs", headers={"accept": "text/html"}, timeout=30, follow_redirects=True)
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_every_server_listens_on_loopback_only(team):
    ports = team.state["ports"]
    listening = [c for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in ports.values()]
    assert {c.laddr.port for c in listening} == set(ports.values())
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")]
    for address in others:
        for port in ports.values():
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((address, port)) != 0, f"port {port} answers on {address}"


def test_mlflow_store_is_postgresql(team):
    name = unique("in-postgres")
    mlflow.MlflowClient(team.mlflow_uri).create_experiment(name)
    with psycopg2.connect(team.postgres_url("mlflow")) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM experiments WHERE name = %s", (name,))
        assert cur.fetchall() == [(name,)]


def test_mlflow_killed_and_restarted_keeps_port_and_data(team):
    uri, name = team.mlflow_uri, unique("survives")
    exp_id = mlflow.MlflowClient(uri).create_experiment(name)
    team.stop_mlflow(kill=True)
    assert not team_module.port_open(team.host, team.state["ports"]["mlflow"])
    team.start_mlflow()
    assert team.mlflow_uri == uri
    assert mlflow.MlflowClient(uri).get_experiment(exp_id).name == name


def test_state_files(team):
    """state.json keeps every secret, team.env what a client needs (the MLflow admin account, Prefect's auth string):
    both 0600; the servers' own secrets (database passwords, Flask key) stay out of team.env."""
    state_json, team_env_file = team.dir / "state.json", team.dir / "team.env"
    for path in (state_json, team_env_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path.name} holds secrets"
    assert json.loads(state_json.read_text())["ports"] == team.state["ports"]
    exports = team_env_file.read_text()
    assert exports == "".join(f"export {k}={v}\n" for k, v in team.env.items())
    secrets = team.state["secrets"]
    assert {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": secrets["mlflow_admin"],
            "PREFECT_API_AUTH_STRING": secrets["prefect_auth"]}.items() <= team.env.items()
    for server_only in ("pg_mlflow", "pg_prefect", "flask_key"):
        assert secrets[server_only] not in exports, server_only


def test_a_server_dying_at_start_up_raises_with_its_log_and_leaves_nothing(tmp_path, monkeypatch):
    made = []  # spy on where the cluster goes, to see it removed
    mkdtemp = team_module.postgres.tempfile.mkdtemp
    monkeypatch.setattr(team_module.postgres.tempfile, "mkdtemp", lambda **kw: made.append(mkdtemp(**kw)) or made[-1])
    fake_python = tmp_path / "fake-python"
    fake_python.write_text("#!/bin/sh\necho 'boom: no server today' >&2\nexit 3\n")
    fake_python.chmod(0o755)
    servers = TeamServers(tmp_path / "broken", python=str(fake_python), ui=False)
    with pytest.raises(RuntimeError, match="boom: no server today"):
        servers.up()
    assert not team_module.port_open("127.0.0.1", servers.state["ports"]["postgres"])
    assert "pg_root" not in servers.state and not servers.state["pids"] and "secrets" not in servers.state
    assert not any(Path(m).exists() for m in made) and not (servers.dir / "postgres").exists()   # a new team's
    assert "ready to accept connections" in (servers.dir / "logs" / "postgres.log").read_text()
