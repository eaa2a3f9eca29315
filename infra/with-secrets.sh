#!/bin/sh
# Starts a team server (or the worker) with its secrets in its environment, read from the files compose mounts at
# /run/secrets (infra/docker-compose.yml `secrets:`), so that no secret is on a command line or in an
# `environment:` entry: `ps` and `docker inspect` show both to anyone who may run them.
# Usage: with-secrets.sh mlflow|prefect|worker COMMAND [ARG...]   (SECRETS_DIR: another folder, for the tests)
set -eu
dir=${SECRETS_DIR:-/run/secrets}
secret() {   # a secret file's content without its trailing newline; a missing file stops the container
    [ -r "$dir/$1" ] || { echo "with-secrets.sh: $dir/$1 is missing or unreadable (infra/make-secrets.sh)" >&2; exit 2; }
    tr -d '\n' < "$dir/$1"
}
role=$1
shift
case "$role" in
mlflow)
    MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:$(secret mlflow_db_password)@postgres:5432/mlflow"
    MLFLOW_AUTH_ADMIN_PASSWORD=$(secret mlflow_admin_password)
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(secret mlflow_flask_secret_key)
    export MLFLOW_BACKEND_STORE_URI MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY ;;
prefect)
    PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://prefect:$(secret prefect_db_password)@postgres:5432/prefect"
    PREFECT_SERVER_API_AUTH_STRING=$(secret prefect_auth_string)
    export PREFECT_SERVER_DATABASE_CONNECTION_URL PREFECT_SERVER_API_AUTH_STRING ;;
worker)   # the MLflow admin account until the run and promoter accounts exist (docs/team.md, Security)
    MLFLOW_TRACKING_PASSWORD=$(secret mlflow_admin_password)
    PREFECT_API_AUTH_STRING=$(secret prefect_auth_string)
    # `nerflow tune`'s studies: the optuna role and database (Optuna advises against SQLite for parallel workers)
    NERFLOW_TUNE_STORAGE="postgresql+psycopg2://optuna:$(secret optuna_db_password)@postgres:5432/optuna"
    export MLFLOW_TRACKING_PASSWORD PREFECT_API_AUTH_STRING NERFLOW_TUNE_STORAGE ;;
*)
    echo "with-secrets.sh: unknown role '$role' (mlflow, prefect, worker)" >&2
    exit 2 ;;
esac
exec "$@"
