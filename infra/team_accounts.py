"""The team's MLflow accounts besides the admin: `run` (what workers and pipeline runs use: log runs, register
versions, tag them) and `promoter` (may also move a protected alias such as @champion and write its history).

The MLflow server runs the nerflow-roles app (infra/mlflow-roles): MLflow's basic-auth plus the rule that only
promoters (admins and the users in NERFLOW_PROMOTERS) change a protected alias or its `nerflow.<alias>.*` history
tags. The accounts are made through basic-auth's own REST API with the admin's credentials, once, after the server
is up; each gets an env file (0600) that `source` or a worker's environment can use.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import urllib.request
from pathlib import Path

import team_postgres as postgres

ACCOUNTS = ("run", "promoter")
PROMOTERS = ("promoter",)
# What an account's env file adds: runs as `run` hand accepted versions to the promote deployment, whose worker
# (`nerflow worker --pool nerflow-promote --promote`, sourced promoter.env) moves @champion (flows/promote_flow.py)
ROLE_ENV = {"run": {"NERFLOW_PROMOTE_DEPLOYMENT": "nerflow-promote/promoter"}}
PREFECT_LOGIN = "team"     # Prefect's open-source server has one shared login: the auth string `team:<secret>`


def new_secrets() -> dict[str, str]:
    """token_urlsafe: [A-Za-z0-9_-], safe in a URL, a SQL literal and an env file without quoting."""
    made = {f"pg_{s}": secrets.token_urlsafe(24) for s in postgres.SERVICES}
    made |= {f"mlflow_{a}": secrets.token_urlsafe(24) for a in ACCOUNTS}
    return {**made, "mlflow_admin": secrets.token_urlsafe(24), "flask_key": secrets.token_urlsafe(32),
            "prefect_auth": f"{PREFECT_LOGIN}:{secrets.token_urlsafe(24)}"}


def write_private(path: Path, text: str) -> None:
    """A file holding secrets: created 0600 before anything is written into it (also when an older one was laxer)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def create_accounts(mlflow_uri: str, admin: tuple[str, str], passwords: dict[str, str]) -> None:
    """Create each account in `passwords` ({username: password}) on the MLflow server; one that exists is kept."""
    for username, password in passwords.items():
        request = urllib.request.Request(
            f"{mlflow_uri}/api/2.0/mlflow/users/create", method="POST",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json", "Authorization": _basic(*admin)})
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
        except urllib.error.HTTPError as e:
            if "already exists" not in e.read().decode(errors="replace"):
                raise RuntimeError(f"MLflow refused to create the account {username!r}: HTTP {e.code}") from None


def env_text(env: dict[str, str]) -> str:
    return "".join(f"export {k}={v}\n" for k, v in env.items())


def account_files(state_dir: Path) -> dict[str, Path]:
    """{account: its env file}: DIR/run.env, DIR/promoter.env."""
    return {name: Path(state_dir) / f"{name}.env" for name in ACCOUNTS}
