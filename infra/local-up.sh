#!/usr/bin/env bash
# Start the local team servers (PostgreSQL, MLflow, Prefect with its UI) on 127.0.0.1, state in STATE_DIR.
# Usage: infra/local-up.sh [STATE_DIR]   (default: .team in the repo; PYTHON defaults to the repo's .venv)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state_dir=$(realpath -m "${1:-$root/.team}")
python=${PYTHON:-$root/.venv/bin/python}

bash "$root/infra/install-debian-deps.sh"
"$python" "$root/infra/team.py" up --state-dir "$state_dir" >/dev/null  # it prints team.env's lines: shown below
# shellcheck disable=SC1091
source "$state_dir/team.env"
cat <<MSG
Team servers are up; stop them with: infra/local-down.sh $state_dir  (or make team-down)
Point a shell at them:  source $state_dir/team.env   (the URLs and the credentials; mode 0600)
MLflow UI:   $MLFLOW_TRACKING_URI/#/experiments?workflowType=machine_learning  (the model-training view)
             log in as $MLFLOW_TRACKING_USERNAME with MLFLOW_TRACKING_PASSWORD from team.env
Prefect UI:  ${PREFECT_API_URL%/api}  (its /ui-settings names this server's API)
             log in with PREFECT_API_AUTH_STRING from team.env
Logs:        $state_dir/logs/
Security (accounts, what is and is not protected): docs/team.md
MSG
