#!/usr/bin/env bash
# Writes the team's secrets for infra/docker-compose.yml, one file each, into DIR (default infra/secrets, which
# git ignores). A file that exists is kept: rotating a secret is deleting its file and running this again (then
# docs/team.md, "Security", says what else to do). DIR is 0700, so only you reach the files on this machine;
# the files are 0644 because compose mounts them into the containers as they are, where each server reads them
# as its own user (postgres, the worker's nerflow).
# Usage: infra/make-secrets.sh [DIR]
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")" && pwd)/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
token() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }   # URL-safe: it goes into URLs
for name in postgres_password mlflow_db_password prefect_db_password optuna_db_password mlflow_admin_password \
            mlflow_flask_secret_key prefect_auth_string; do
    file=$dir/$name
    [ -e "$file" ] && continue
    value=$(token)
    # Prefect's one shared login is `user:password`, which its UI's login form and `curl -u` both take.
    [ "$name" = prefect_auth_string ] && value="team:$value"
    (umask 022 && printf '%s\n' "$value" > "$file")
    echo "wrote $file"
done
