"""A study shared by two workers of a Prefect work pool on the team servers: `nerflow tune --pool P --workers 2`
starts two runs of the deployment `nerflow-tune/STUDY`; two `nerflow worker` processes (each its own stage cache,
as two machines would have) run them, both pulling trials of one study in the team's PostgreSQL (the optuna
database and role: not MLflow's). No trial runs twice, every trial is one MLflow child run, the study ends with
its N trials."""
from __future__ import annotations

import os

import optuna
import yaml
from mlflow import MlflowClient

from .scheduling import NERFLOW, Background, make_project, nerflow, process_env

TRIALS = 4


def test_two_workers_share_one_study_and_no_trial_runs_twice(team, tmp_path):
    config = make_project(tmp_path, "tune-team", epochs=8)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}))
    env = process_env({**os.environ, **team.env}, tmp_path)
    storage = env["NERFLOW_TUNE_STORAGE"]
    assert storage.startswith("postgresql+psycopg2://optuna:") and storage.endswith("/optuna")
    pool = "tune-pool"
    workers = [Background([*NERFLOW, "worker", "--pool", pool], tmp_path,
                          {**env, "NERFLOW_CACHE_DIR": str(tmp_path / f"cache-{i}")}, tmp_path / f"worker-{i}.log")
               for i in (1, 2)]
    try:
        done = nerflow(["tune", config.name, "--trials", str(TRIALS), "--space", "space.yaml", "--study", "shared",
                        "--pool", pool, "--workers", "2", "--json"], tmp_path, env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr + "".join(w.tail() for w in workers)
    finally:
        Background.stop_all(workers, timeout=10)   # their runs have ended
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) >= TRIALS and not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert len({t.number for t in trials}) == len(trials)
    # nor drew the same values: each worker has a sampler of its own, and each trial's draws are seeded by its number
    assert len({t.params["train.lr"] for t in trials}) == len(trials)
    flow_runs = {t.user_attrs["flow_run"] for t in trials}
    assert len(flow_runs) <= 2 and all(flow_runs)   # the trials came from the two runs of the deployment
    client = MlflowClient(team.mlflow_uri)
    exp = client.get_experiment_by_name("tune-team").experiment_id
    parents = client.search_runs([exp], "tags.`nerflow.study` = 'shared'")
    assert len(parents) == 1   # created once, before the runs: neither worker raced the other to make it
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    labels = [r.data.tags["nerflow.trial"] for r in children]
    assert sorted(labels) == sorted(["defaults", *(str(t.number) for t in trials)])   # none twice, defaults once
    assert all(r.info.status in ("FINISHED", "KILLED") for r in children)
