#!/usr/bin/env bash
# Stop what infra/local-up.sh started from STATE_DIR (Prefect, MLflow, then PostgreSQL); safe to run twice.
# Keeps everything they store (the next local-up.sh starts them on it); `make team-wipe` deletes it.
# Usage: infra/local-down.sh [STATE_DIR]   (default: .team in the repo)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state_dir=$(realpath -m "${1:-$root/.team}")
python=${PYTHON:-$root/.venv/bin/python}

"$python" "$root/infra/team.py" down --state-dir "$state_dir"
echo "Team servers from $state_dir are stopped; their data is kept (make team-up starts them on it again,"
echo "make team-wipe deletes it)."
