"""Roles on the team's MLflow server (the nerflow-roles app, infra/mlflow-roles, as `make team-up` starts it): the
run account registers and tags versions, but moving @champion or writing its `nerflow.champion.*` history is refused
to it through nerflow, MLflow's client and the raw REST API (the UI's /ajax-api too), and it does not become MANAGE
owner of a model it creates; the promoter account moves @champion through nerflow, and the history names it; a
version awaiting approval is approved by the promoter (the history names it), never by the run account."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nerflow import history

NERFLOW = [sys.executable, "-m", "nerflow.flows.cli"]


def as_account(team, account: str, monkeypatch) -> tuple[str, str]:
    """This process's MLflow client as `account` (the client reads the credentials at each request)."""
    env = team.account_env(account)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", env["MLFLOW_TRACKING_USERNAME"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", env["MLFLOW_TRACKING_PASSWORD"])
    return env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]


def nerflow(team, account: str, *args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([*NERFLOW, *args], env={**os.environ, **team.account_env(account)}, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def registered(team, monkeypatch) -> tuple[str, str]:
    """A model and version 1, registered by the run account (as a pipeline run of a worker would)."""
    as_account(team, "run", monkeypatch)
    client, name = MlflowClient(team.mlflow_uri, registry_uri=team.mlflow_uri), f"roles-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(name)
    run = client.create_run(experiment)
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id).version
    client.set_registered_model_alias(name, "challenger", version)      # an unprotected alias: allowed
    client.set_model_version_tag(name, version, "nerflow.promotion", "accepted")
    return name, version


def test_the_run_account_registers_but_cannot_move_champion_or_write_its_history(team, registered, monkeypatch):
    name, version = registered
    user, password = as_account(team, "run", monkeypatch)
    client = MlflowClient(team.mlflow_uri, registry_uri=team.mlflow_uri)
    assert client.get_registered_model(name).aliases == {"challenger": version}

    for attempt in (lambda: client.set_registered_model_alias(name, "champion", version),
                    lambda: client.set_registered_model_tag(name, "nerflow.champion.champion.000001", "{}")):
        with pytest.raises(MlflowException) as refused:
            attempt()
        assert refused.value.error_code == "PERMISSION_DENIED", refused.value
    client.set_registered_model_tag(name, "team", "ner")   # other tags stay the run account's to write

    for prefix in ("api", "ajax-api"):   # the REST API and the UI's own calls
        alias = httpx.post(f"{team.mlflow_uri}/{prefix}/2.0/mlflow/registered-models/alias", auth=(user, password),
                           json={"name": name, "alias": "champion", "version": version}, timeout=30)
        assert alias.status_code == 403 and "promoter" in alias.text, alias.text
        tag = httpx.post(f"{team.mlflow_uri}/{prefix}/2.0/mlflow/registered-models/set-tag", auth=(user, password),
                         json={"name": name, "key": "nerflow.champion.champion.000001", "value": "{}"}, timeout=30)
        assert tag.status_code == 403, tag.text

    forced = nerflow(team, "run", "promote", name, version, "--force", "--reason", "ship it")
    assert forced.returncode == 4, forced.stderr
    # one `error:` line (one full run showed a second stderr line here that three reruns did not: whatever it was,
    # the failure message now shows all of stderr)
    errors = [line for line in forced.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "403" in errors[0] and "run" in errors[0], forced.stderr
    assert "champion" not in client.get_registered_model(name).aliases

    # creating the model did not make the run account its MANAGE owner (it could grant itself anything)
    mine = httpx.get(f"{team.mlflow_uri}/api/3.0/mlflow/users/current/permissions", auth=(user, password),
                     timeout=30).json()["permissions"]
    assert {p["permission"] for p in mine if p["resource_type"] == "registered_model"
            and p["resource_pattern"] == name} == {"EDIT"}


def test_the_promoter_moves_champion_and_the_history_names_it(team, registered, monkeypatch):
    name, version = registered
    moved = nerflow(team, "promoter", "promote", name, version, "--force", "--reason", "approved by the team")
    assert moved.returncode == 0, moved.stderr
    as_account(team, "promoter", monkeypatch)
    client = MlflowClient(team.mlflow_uri, registry_uri=team.mlflow_uri)
    assert client.get_registered_model(name).aliases["champion"] == version
    history = nerflow(team, "run", "models", "history", name, "--json")   # anyone may read it
    assert history.returncode == 0, history.stderr
    (entry,) = json.loads(history.stdout)
    assert entry["actor"] == "promoter" and entry["to_version"] == version, entry


def test_an_approval_is_refused_to_the_run_account_and_recorded_for_the_promoter(team, registered, monkeypatch):
    """A version the gate accepted in approval mode, tagged by the run account as its promote stage does."""
    name, version = registered
    as_account(team, "run", monkeypatch)
    client = MlflowClient(team.mlflow_uri, registry_uri=team.mlflow_uri)
    for key, value in (("nerflow.gated_against", ""), ("nerflow.reason", f"nerflow approve {name} {version} ..."),
                       ("nerflow.promotion", "awaiting approval")):
        client.set_model_version_tag(name, version, key, value)

    refused = nerflow(team, "run", "approve", name, version, "--reason", "I approve my own run")
    assert refused.returncode == 4, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "403" in errors[0] and "'run'" in errors[0], refused.stderr
    model = client.get_registered_model(name)   # nothing half-written: the history's intended entry was refused
    assert "champion" not in model.aliases and not [k for k in model.tags if k.startswith("nerflow.champion.")]
    assert client.get_model_version(name, version).tags["nerflow.promotion"] == "awaiting approval"

    approved = nerflow(team, "promoter", "approve", name, version, "--reason", "reviewed by the team")
    assert approved.returncode == 0, approved.stderr
    assert client.get_registered_model(name).aliases["champion"] == version
    assert client.get_model_version(name, version).tags["nerflow.promotion"] == "approved"
    (entry,) = history.decode_all(client.get_registered_model(name).tags, "champion")   # as `models history` reads it
    assert (entry.action, entry.actor, entry.to_version, entry.state) == ("approve", "promoter", version, "done"), entry
