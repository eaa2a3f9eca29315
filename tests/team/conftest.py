"""Real team servers (PostgreSQL, `mlflow server`, `prefect server start`) for tests/team, started once a session by
infra/team.py and stopped again at the end, also when a test or the start-up fails."""
from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def team_env(team) -> dict[str, str]:
    """Environment for a subprocess that should talk to the team servers (a fresh dict per test)."""
    return {**os.environ, **team.env}
