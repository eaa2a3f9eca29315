"""The command lines and environments of infra/team.py's MLflow and Prefect servers: every secret by environment,
none on argv; a caller's client settings removed; the MLflow auth config and artifact store in the state dir."""
from __future__ import annotations

import os

import team_accounts as accounts

MLFLOW_ADMIN = "admin"     # the account team.env hands out (the admin's shell); workers use run.env and
                           # promoter.env, the two role accounts (infra/team_accounts.py)
CLIENT_VARS = {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
               "MLFLOW_TRACKING_TOKEN", "PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"}

# Short service loops so a schedule of a few seconds fires in a test; a variable already in the environment wins.
FAST_SERVICES = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "5",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_LOOP_SECONDS": "5",
    # a run queued behind a deployment's concurrency limit (ENQUEUE) asks for the slot again after this, not 30 s
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
}


AUTH_DB = "mlflow-auth.db"   # MLflow's accounts and permissions, in DIR


def server_command(team, name: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the server `name` (mlflow, prefect) of `team` (a TeamServers)."""
    port, env = str(team.state["ports"][name]), dict(os.environ)
    for key in [k for k in env if k in CLIENT_VARS or k.startswith(("PREFECT_API_DATABASE",
                                                                      "PREFECT_SERVER_DATABASE"))]:
        del env[key]  # a caller's client settings (tracking URI, API URL, test databases) are not ours
    secrets_ = team.state["secrets"]
    if name == "mlflow":
        # Secrets (store URI with its password, admin password, Flask key) go by environment, not argv: argv is
        # visible in ps. The auth database is a file here: no password in the auth config file.
        # No job runner: it forks ~7 huey consumers (GenAI jobs nerflow never uses) and leaves a /dev/shm dir.
        # Each request's password check is a PBKDF2 hash (~0.4 s of a busy core): cached for a minute after a
        # success. With one worker a password changed through the API is seen at once (MLflow's basic_auth.ini).
        config = team.dir / "mlflow-auth.ini"
        config.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{team.dir / AUTH_DB}\n"
                          f"admin_username = {MLFLOW_ADMIN}\nauth_cache_ttl_seconds = 60\n")
        env.update(MLFLOW_BACKEND_STORE_URI=team.postgres_url("mlflow"), MLFLOW_DISABLE_TELEMETRY="true",
                   MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_AUTH_CONFIG_PATH=str(config),
                   MLFLOW_AUTH_ADMIN_USERNAME=MLFLOW_ADMIN, MLFLOW_AUTH_ADMIN_PASSWORD=secrets_["mlflow_admin"],
                   MLFLOW_FLASK_SERVER_SECRET_KEY=secrets_["flask_key"],
                   NERFLOW_PROMOTERS=",".join(accounts.PROMOTERS))
        # nerflow-roles (infra/mlflow-roles): basic-auth plus "only promoters move @champion or write its history"
        return [team.python, "-m", "mlflow", "server", "--app-name", "nerflow-roles", "--serve-artifacts",
                "--artifacts-destination", str(team.dir / "artifacts"), "--host", team.host, "--port", port,
                "--workers", "1"], env
    env.update(PREFECT_SERVER_DATABASE_CONNECTION_URL=team.postgres_url("prefect").replace(
        "postgresql://", "postgresql+asyncpg://"), PREFECT_SERVER_API_AUTH_STRING=secrets_["prefect_auth"],
        PREFECT_HOME=str(team.dir / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false")   # no "Prefect Cloud" toast in a team's UI
    # The UI asks /ui-settings where its API is; unset, the answer is 127.0.0.1:4200, not this server. A value
    # in the environment wins (a proxy in front of the server: the address browsers use).
    if not {"PREFECT_SERVER_UI_API_URL", "PREFECT_UI_API_URL"} & env.keys():
        env["PREFECT_SERVER_UI_API_URL"] = team.prefect_api_url
    for key, value in FAST_SERVICES.items() if team.fast_services else ():
        env.setdefault(key, value)
    ui = ["--ui"] if team.ui else ["--no-ui"]
    return [team.python, "-m", "prefect", "server", "start", "--host", team.host, "--port", port, *ui], env

