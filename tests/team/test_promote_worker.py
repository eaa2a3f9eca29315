"""Auto promotion on the team servers with roles: a pipeline run as the `run` account (run.env: it may not move
@champion, and NERFLOW_PROMOTE_DEPLOYMENT hands accepted versions over) gates its version and submits a run of the
promote deployment; `nerflow worker --pool POOL --promote`, started with the promoter's credentials (promoter.env),
creates that deployment, runs it, and moves @champion; the history names the promoter."""
from __future__ import annotations

import os

import httpx
from mlflow import MlflowClient

from nerflow import history, promotion

from .conftest import PREFECT_AUTH
from .scheduling import NERFLOW, Background, make_project, nerflow, process_env, wait_for


def test_an_auto_run_as_the_run_account_is_promoted_by_the_promoters_worker(team, tmp_path):
    model, pool = "promoted-by-worker", "nerflow-promote"
    cfg = make_project(tmp_path, model, extra="promote: {min_f1: 0.0, min_support: 1}\n")
    as_promoter = process_env({**os.environ, **team.account_env("promoter")}, tmp_path,
                              NERFLOW_WORKDIR_ROOTS=str(tmp_path))
    worker = Background([*NERFLOW, "worker", "--pool", pool, "--promote"], tmp_path, as_promoter,
                        tmp_path / "promoter-worker.log")
    try:
        deployment = f"{team.prefect_api_url}/deployments/name/nerflow-promote/promoter"
        wait_for(lambda: httpx.get(deployment, auth=PREFECT_AUTH).status_code == 200, 60,
                 "the promoter's worker to create its deployment", worker)

        as_run = process_env({**os.environ, **team.account_env("run")}, tmp_path)
        assert as_run["NERFLOW_PROMOTE_DEPLOYMENT"] == "nerflow-promote/promoter"   # what run.env hands out
        ran = nerflow(["run", cfg.name], tmp_path, as_run, timeout=300)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        assert "handed to nerflow-promote/promoter" in ran.stdout, ran.stdout

        admin = MlflowClient(team.mlflow_uri, registry_uri=team.mlflow_uri)   # team.env: the admin's shell

        def moved() -> list[history.Entry]:   # the alias moves before its history entry is marked done
            found = admin.get_registered_model(model)
            done = [e for e in history.decode_all(found.tags, "champion") if e.state == history.DONE]
            return done if found.aliases.get("champion") == "1" else []

        (entry,) = wait_for(moved, 120, "the promoter's worker to move @champion", worker)
        assert (entry.action, entry.actor, entry.to_version, entry.state) == ("promote", "promoter", "1", "done")
        version = admin.get_model_version(model, "1")
        assert version.tags["nerflow.promotion"] == "accepted" and entry.evidence.mlflow_run_id == version.run_id
        assert promotion.HANDED_OVER not in version.tags["nerflow.reason"]
    finally:
        worker.stop()
