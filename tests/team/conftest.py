"""Real team servers (PostgreSQL, `mlflow server`, `prefect server start`) for tests/team, started once a session by
infra/team.py in a state dir of the session's own and stopped and wiped again at the end, also when a test or the
start-up fails. Authentication is on, as
`make team-up` starts them: a test that uses them runs as a shell that sourced team.env (its credentials in the
environment), and raw REST calls carry them with `auth=MLFLOW_AUTH` / `auth=PREFECT_AUTH`."""
from __future__ import annotations

import base64
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_team_module():
    """infra/ is no package: load infra/team.py by path, under a name no test or fixture uses."""
    name = "nerflow_team_servers"
    if name not in sys.modules:  # one module (one TeamServers class) however often this file is imported
        spec = importlib.util.spec_from_file_location(name, ROOT / "infra" / "team.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


team_module = _load_team_module()
TeamServers = team_module.TeamServers


@pytest.fixture(scope="session")
def team(tmp_path_factory) -> Iterator[TeamServers]:
    # fast_services: schedules of a few seconds fire within a test. The UI on, as `make team-up` starts it: a
    # browser looks at it (tests/team/browser.py); it cost ~1.5 s of start-up here (18.5 vs 20.1 s, 16.4 vs 17.9 s).
    servers = TeamServers(state_dir=tmp_path_factory.mktemp("team"), fast_services=True, ui=True)
    try:
        servers.up()
        yield servers
    finally:
        servers.down()
        servers.wipe()   # `down` keeps a team's data (a cluster in /var/tmp as root): a test session keeps none


@pytest.fixture(autouse=True)
def _team_credentials(request, monkeypatch) -> None:
    """A test of the team servers gets team.env's variables (credentials included) in this process too, as a
    user's shell has them: in-process MLflow and Prefect clients and MLFLOW_AUTH/PREFECT_AUTH read them."""
    if "team" in request.fixturenames:
        for key, value in request.getfixturevalue("team").env.items():
            monkeypatch.setenv(key, value)


class EnvAuth(httpx.Auth):
    """HTTP basic auth from the environment at request time: the MLflow account, or Prefect's auth string (which
    Prefect's client sends as `Basic base64(auth string)`)."""

    def __init__(self, *names: str):
        self.names = names

    def auth_flow(self, request):
        raw = ":".join(os.environ[name] for name in self.names)
        request.headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
        yield request


MLFLOW_AUTH = EnvAuth("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
PREFECT_AUTH = EnvAuth("PREFECT_API_AUTH_STRING")


@pytest.fixture
def team_env(team) -> dict[str, str]:
    """Environment for a subprocess that should talk to the team servers (a fresh dict per test)."""
    return {**os.environ, **team.env}
