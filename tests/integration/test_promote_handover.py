"""Auto mode with a promote deployment (NERFLOW_PROMOTE_DEPLOYMENT), on a real sqlite registry and the session's
Prefect server: the run's gate decides and hands the move over (the version tagged, a run of the deployment
submitted, nothing moved, nothing waited for); the deployment's flow, run as the promoter, moves the alias and the
history names that user; it refuses what the gate did not hand over. The same with real accounts and a real worker:
tests/team/test_promote_worker.py."""
from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from nerflow import promotion
from nerflow.config import ConfigError
from nerflow.deploy_guard import DeploymentRefused
from nerflow.model_files import MODEL_HASH_TAG

from .test_promotion import STRONG, champion_of, entries, pipeline


def flow_run(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def test_an_auto_run_hands_the_move_to_the_promote_deployment(pipeline_result, tmp_path, tiny_corpus,
                                                              corpus_model_dir, cache_dir, mlflow_store, monkeypatch):
    from nerflow.flows.promote_flow import apply_deployment, promote_accepted

    name, client = "gate-handover", MlflowClient()
    args = (tmp_path, tiny_corpus, corpus_model_dir, cache_dir, name, *STRONG)
    monkeypatch.setenv("NERFLOW_PROMOTE_DEPLOYMENT", "nerflow-promote/nowhere")
    with pytest.raises(ConfigError, match=r"^NERFLOW_PROMOTE_DEPLOYMENT=nerflow-promote/nowhere: no such deployment"):
        pipeline(*args)
    assert "nerflow.promotion" not in client.get_model_version(name, "1").tags   # refused before the gate wrote

    apply_deployment("nerflow-promote-test")
    monkeypatch.setenv("NERFLOW_PROMOTE_DEPLOYMENT", "nerflow-promote/promoter")
    run = pipeline(*args)
    said = run["promote"].decision
    assert said["accepted"] and not said["moved"] and said["decision"] == promotion.HANDED_OVER, said
    assert said["handed_to"] == "nerflow-promote/promoter" and champion_of(name) is None and entries(name) == []
    tags = client.get_model_version(name, "1").tags
    assert tags["nerflow.promotion"] == promotion.HANDED_OVER and tags["nerflow.gated_against"] == ""
    assert json.loads(tags["nerflow.gate_evidence"])["mlflow_run_id"] == run.run_id
    (line,) = run["promote"].summary_lines(None)
    assert "handed to nerflow-promote/promoter" in line and said["promote_flow_run"] in line, line
    submitted = flow_run(said["promote_flow_run_id"])
    assert submitted.parameters == {"model_name": name, "version": "1", "alias": "champion"}
    assert submitted.state.type.value == "SCHEDULED"   # for the promoter's worker; the run did not wait for it

    # what the promoter's worker runs: the flow, as the promoter's MLflow user
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "pat")
    assert "moved from version - to 1 by pat" in promote_accepted(name, "1")
    (entry,) = entries(name)
    assert (entry.action, entry.actor, entry.to_version, entry.state) == ("promote", "pat", "1", "done"), entry
    assert entry.evidence.mlflow_run_id == run.run_id and entry.evidence.challenger_f1 == said["challenger_f1"]
    assert client.get_model_version(name, "1").tags["nerflow.promotion"] == "accepted"
    assert "nothing to do" in promote_accepted(name, "1")   # submitted twice (a crash, a retry): harmless
    assert len(entries(name)) == 1

    # a request the gate did not hand over (a parameter edited on the Prefect server): refused, nothing moves
    src = client.get_model_version(name, "1")
    v2 = str(client.create_model_version(name, src.source, run_id=src.run_id, tags={
        "nerflow.task": "token-classification", MODEL_HASH_TAG: src.tags[MODEL_HASH_TAG],
        "nerflow.promotion": "rejected"}).version)
    with pytest.raises(promotion.Refused, match=f"version {v2} is not handed to the promoter"):
        promote_accepted(name, v2)
    # handed over when no version was @champion: the champion moved since, so it is refused too
    client.set_model_version_tag(name, v2, "nerflow.gated_against", "")
    client.set_model_version_tag(name, v2, "nerflow.promotion", promotion.HANDED_OVER)
    with pytest.raises(promotion.Refused, match="moved since the gate compared it"):
        promote_accepted(name, v2)
    with pytest.raises(DeploymentRefused, match="deployment parameter version"):
        promote_accepted(name, "1; rm -rf /")
    assert str(champion_of(name)) == "1" and len(entries(name)) == 1
