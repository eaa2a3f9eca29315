"""Which Prefect flow runs were attempts of an MLflow run: a bounded, searchable tag and a complete artifact.

A schedule that keeps failing continues the same MLflow run every time (tasks/tracking.py, `open_run`), one attempt
per Prefect flow run. Appending every flow-run id to one tag grew it ~37 characters an attempt until MLflow's cap
on a tag value (8,000 characters: ~216 attempts) refused the write, and from then on every attempt failed, as
bad input, before its first stage. So:

- the tag `prefect_flow_run_ids` holds the newest `KEEP` ids (comma-separated): what `nerflow rerun <flow-run id>`
  finds with one search, for the ids anyone still has on screen;
- the artifact `attempts/flow_runs.jsonl` holds every attempt (attempt number, flow-run id, time), one line each,
  rewritten whole per attempt (one attempt of a logical run at a time: the run lock);
- the tag `nerflow.flow_runs_dropped` counts the ids only the artifact has: the few runs carrying it are the only
  ones whose artifact an older id's lookup reads (`MAX_CANDIDATES` of them, newest first).
"""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nerflow.prefect_tasks import mlflow_pages

FLOW_RUN_TAG, FLOW_RUNS_TAG = "prefect_flow_run_id", "prefect_flow_run_ids"
DROPPED_TAG = "nerflow.flow_runs_dropped"
ARTIFACT = "attempts/flow_runs.jsonl"
KEEP = 20               # 20 x 37 characters: far below the cap, and more ids than a person scrolls back through
MAX_CANDIDATES = 200    # runs with dropped ids whose artifact one lookup may read


def read(client: MlflowClient, run_id: str) -> list[dict]:
    """The run's attempt records, oldest first; [] for a run logged before the artifact existed."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, ARTIFACT, tmp)
        except (MlflowException, OSError):
            return []
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def record(client: MlflowClient, run_id: str, attempt: int, flow_run_id: str | None,
           previous_tags: dict[str, str] | None = None) -> dict[str, str]:
    """Add this attempt to the run's artifact and return the attempt tags to set (`previous_tags`: the run's tags
    as the attempt found them; None for a new run)."""
    previous_tags = previous_tags or {}
    tagged = [x for x in previous_tags.get(FLOW_RUNS_TAG, "").split(",") if x]
    history = read(client, run_id) if previous_tags else []
    if not history and tagged:   # a run from before the artifact: its tag is all that is known of its attempts
        history = [{"attempt": None, "flow_run_id": x, "time": None} for x in tagged]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    history.append({"attempt": attempt, "flow_run_id": flow_run_id or None, "time": now})
    client.log_text(run_id, "".join(json.dumps(h) + "\n" for h in history), ARTIFACT)
    ids = [*tagged, *([flow_run_id] if flow_run_id else [])]
    dropped = int(previous_tags.get(DROPPED_TAG, "0") or 0) + max(0, len(ids) - KEEP)
    return {FLOW_RUN_TAG: flow_run_id, FLOW_RUNS_TAG: ",".join(ids[-KEEP:]),
            DROPPED_TAG: str(dropped) if dropped else None}


def runs_of_flow_run(client: MlflowClient, flow_run_id: str) -> list:
    """The pipeline runs one of whose attempts was this Prefect flow run (matched whole): by the tag of the newest
    ids first, else in the artifacts of the runs that dropped ids from it."""
    experiments = mlflow_pages.experiment_ids(client)
    # the search narrows (LIKE), the exact comparison decides
    found = [r for r in mlflow_pages.runs(client, experiments, f"tags.{FLOW_RUNS_TAG} LIKE '%{flow_run_id}%'")
             if flow_run_id in r.data.tags.get(FLOW_RUNS_TAG, "").split(",")]
    if found:
        return found
    candidates = mlflow_pages.runs(client, experiments, f"tags.`{DROPPED_TAG}` != ''",
                                   order_by=["attributes.start_time DESC"], limit=MAX_CANDIDATES)
    return [r for r in candidates
            if any(h.get("flow_run_id") == flow_run_id for h in read(client, r.info.run_id))]
