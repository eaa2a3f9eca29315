"""A local team keeps its state: `make team-down && make team-up` (the real Makefile targets, on real servers)
keeps every version, alias, champion history entry, artifact, account and Prefect object; a second `up` on a
running team reports it and starts nothing; `wipe` is refused while the servers run and without confirmation, and
deletes everything with it."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psutil
from mlflow import MlflowClient

from nerflow import history
from nerflow.prefect_tasks import champion

from .conftest import ROOT, TeamServers, team_module

TEAM_PY = [sys.executable, str(ROOT / "infra" / "team.py")]
# this interpreter's virtualenv; `-o install -o debian-deps`: the targets' own prerequisites are `make test`'s
# business (a worktree may have no .venv/.installed stamp, and installing is not what is tested here)
MAKE = ["make", "-s", "-C", str(ROOT), "-o", "install", "-o", "debian-deps", f"VENV={Path(sys.executable).parents[1]}"]


def make(target: str, state_dir: Path, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*MAKE, target, f"TEAM_DIR={state_dir}"], input=stdin, capture_output=True, text=True,
                          timeout=600)


def team_py(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """stdin "" by default: a question gets end-of-file, never the terminal pytest runs in."""
    return subprocess.run([*TEAM_PY, *args], input=stdin, capture_output=True, text=True, timeout=120)


def server_processes(state: dict) -> list[psutil.Process]:
    """mlflow, prefect and the postmaster with all their children, read while they run."""
    pids = list(state["pids"].values())
    pids.append(int((Path(state["pg_root"]) / "data" / "postmaster.pid").read_text().split()[0]))
    procs = [psutil.Process(pid) for pid in pids]
    return procs + [child for p in procs for child in p.children(recursive=True)]


def still_running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """PID 1 on some machines never reaps orphans: a zombie has stopped all the same."""
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def as_account(team: TeamServers, account: str, monkeypatch) -> MlflowClient:
    """This process's MLflow and Prefect clients as `account` of `team` (both read the environment per request)."""
    for key, value in team.account_env(account).items():
        monkeypatch.setenv(key, value)
    return MlflowClient(team.mlflow_uri, registry_uri=team.mlflow_uri)


def fill(team: TeamServers, name: str, tmp_path: Path, monkeypatch) -> str:
    """What a team's registry holds after a few runs: versions registered by the run account (one with an
    artifact), @champion moved twice by the promoter through nerflow's history, a flow on Prefect. The flow's id."""
    client = as_account(team, "run", monkeypatch)
    run = client.create_run(client.create_experiment(name))
    (tmp_path / "note.txt").write_text("kept\n")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, "challenger", "3")
    client.set_model_version_tag(name, "3", "team", "ner")
    promoter = as_account(team, "promoter", monkeypatch)
    for version in ("1", "2"):
        champion.force(promoter, name, version, "champion", "promoter", f"ship {version}")
    flow = httpx.post(f"{team.prefect_api_url}/flows/", json={"name": name}, timeout=30,
                      auth=tuple(team.state["secrets"]["prefect_auth"].split(":", 1)))
    assert flow.status_code in (200, 201), flow.text
    return flow.json()["id"]


def registry(client: MlflowClient, name: str) -> dict:
    model = client.get_registered_model(name)
    versions = client.search_model_versions(f"name = '{name}'")
    return {"aliases": dict(model.aliases), "tags": dict(model.tags), "description": model.description,
            "versions": sorted((v.version, v.run_id, v.source, sorted(v.tags.items())) for v in versions)}


def test_team_down_then_up_keeps_every_version_alias_history_entry_and_account(tmp_path, monkeypatch):
    state_dir, name = tmp_path / "kept-team", f"kept-{uuid.uuid4().hex[:8]}"
    try:
        up = make("team-up", state_dir)
        assert up.returncode == 0, up.stdout + up.stderr
        team = TeamServers(state_dir)
        flow_id = fill(team, name, tmp_path, monkeypatch)
        before = registry(as_account(team, "admin", monkeypatch), name)
        assert [(e.action, e.to_version, e.actor) for e in history.decode_all(before["tags"], "champion")] == [
            ("force", "1", "promoter"), ("force", "2", "promoter")]
        assert before["aliases"] == {"champion": "2", "challenger": "3"} and len(before["versions"]) == 3
        account_secrets, procs = team.state["secrets"], server_processes(team.state)

        again = team_py("up", "--state-dir", str(state_dir))   # a second `up` on a running team: reported
        assert again.returncode == 0 and "already running" in again.stderr, again.stderr
        assert TeamServers(state_dir).state["pids"] == team.state["pids"]
        refused = team_py("wipe", "--state-dir", str(state_dir), "--yes")
        assert refused.returncode == 1 and "are running" in refused.stderr, refused.stderr

        down = make("team-down", state_dir)
        assert down.returncode == 0, down.stdout + down.stderr
        assert still_running(procs) == []
        assert not any(team_module.port_open("127.0.0.1", port) for port in team.state["ports"].values())
        assert not (state_dir / "team.env").exists() and team_py("env", "--state-dir", str(state_dir)).returncode
        assert Path(team.state["pg_root"], "data", "PG_VERSION").is_file()

        up = make("team-up", state_dir)
        assert up.returncode == 0, up.stdout + up.stderr
        team = TeamServers(state_dir)
        assert team.state["secrets"] == account_secrets   # the same accounts, passwords and database roles
        assert registry(as_account(team, "admin", monkeypatch), name) == before
        client = as_account(team, "run", monkeypatch)     # the run account's password still opens the registry
        run_id = before["versions"][0][1]
        assert Path(client.download_artifacts(run_id, "note.txt", str(tmp_path))).read_text() == "kept\n"
        promoter = as_account(team, "promoter", monkeypatch)   # and the promoter still moves @champion
        champion.rollback(promoter, name, "champion", "promoter", "back to 1")
        assert [e.to_version for e in champion.read_history(promoter, name, "champion")] == ["1", "2", "1"]
        wrong = httpx.get(f"{team.mlflow_uri}/api/2.0/mlflow/registered-models/get", params={"name": name},
                          auth=("run", "not-the-password"), timeout=30)
        assert wrong.status_code == 401   # authentication is still on
        flow = httpx.get(f"{team.prefect_api_url}/flows/{flow_id}", timeout=30,
                         auth=tuple(team.state["secrets"]["prefect_auth"].split(":", 1)))
        assert flow.status_code == 200 and flow.json()["name"] == name

        assert make("team-down", state_dir).returncode == 0
        for answer in ("", "wrong-name\n"):   # nothing typed, or not the state dir's name: kept
            kept = team_py("wipe", "--state-dir", str(state_dir), stdin=answer)
            assert kept.returncode == 1 and "not confirmed" in kept.stderr, kept.stderr
            assert json.loads((state_dir / "state.json").read_text())["secrets"] == account_secrets
        wiped = make("team-wipe", state_dir, stdin=f"{state_dir.name}\n")
        assert wiped.returncode == 0, wiped.stdout + wiped.stderr
        assert not state_dir.exists() and not Path(team.state["pg_root"]).exists()
    finally:
        team_py("down", "--state-dir", str(state_dir))
        team_py("wipe", "--state-dir", str(state_dir), "--yes")
