"""Approval mode (promote.mode: approval) on a real sqlite registry: the run ends awaiting approval without moving
the alias, a person approves or rejects with `nerflow approve` / `nerflow reject`, and the history names them."""
from __future__ import annotations

import json

from mlflow import MlflowClient

from nerflow.flows import cli
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_REFUSED
from nerflow.model_files import MODEL_HASH_TAG

from .test_promotion import STRONG, champion_of, entries, pipeline


def test_an_approval_run_waits_for_a_person_who_approves_or_rejects(pipeline_result, tmp_path, tiny_corpus,
                                                                     corpus_model_dir, cache_dir, mlflow_store,
                                                                     capsys, monkeypatch):
    name = "gate-approval"
    # the training is the session's cached one (STRONG is pipeline_result's, asked for first so that the template
    # trains in its own run, whose metrics test_pipeline reads): only register and promote run here
    run = pipeline(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, name, *STRONG, "promote.mode=approval")
    said = run["promote"].decision
    assert said["accepted"] and not said["moved"] and said["decision"] == "awaiting approval", said
    assert champion_of(name) is None and entries(name) == []          # nothing moved, no history written
    client = MlflowClient()
    tags = client.get_model_version(name, "1").tags
    hint = f"nerflow approve {name} 1 --reason TEXT"
    assert tags["nerflow.promotion"] == "awaiting approval" and hint in tags["nerflow.reason"]
    assert client.get_run(run.run_id).data.tags["promotion"] == "awaiting approval"
    (line,) = run["promote"].summary_lines(None)
    assert line.startswith("promotion:  awaiting approval for @champion: " + hint), line

    capsys.readouterr()
    assert cli.main(["approve", name, "1"]) == EXIT_BAD_INPUT                  # no reason: nothing recorded
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "dana")   # the authenticated user (a sqlite store ignores it)
    assert cli.main(["approve", name, "1", "--reason", "reviewed the errors", "--json"]) == 0
    approved = json.loads(capsys.readouterr().out)
    assert approved["moved"] and approved["entry"]["actor"] == "dana" and str(champion_of(name)) == "1"
    assert client.get_model_version(name, "1").tags["nerflow.promotion"] == "approved"
    assert cli.main(["models", "history", name, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["action"], entry["actor"], entry["from_version"], entry["to_version"], entry["reason"],
            entry["state"]) == ("approve", "dana", None, "1", "reviewed the errors", "done")
    assert cli.main(["approve", name, "1", "--reason", "again"]) == EXIT_REFUSED   # approved: no longer awaiting
    assert "not awaiting approval" in capsys.readouterr().err

    # version 2, gated (as the run account tags it) when no version was @champion: the champion has moved since,
    # so it cannot be approved without a new comparison; it can be rejected, and nothing moves
    src = client.get_model_version(name, "1")
    v2 = str(client.create_model_version(name, src.source, run_id=src.run_id, tags={
        "nerflow.task": "token-classification", MODEL_HASH_TAG: src.tags[MODEL_HASH_TAG]}).version)
    for key, value in (("nerflow.gated_against", ""), ("nerflow.reason", "accepted"),
                       ("nerflow.promotion", "awaiting approval")):
        client.set_model_version_tag(name, v2, key, value)
    assert cli.main(["approve", name, v2, "--reason", "ship it"]) == EXIT_REFUSED
    assert "moved since the gate compared it" in capsys.readouterr().err and str(champion_of(name)) == "1"
    assert cli.main(["reject", name, v2, "--reason", "too slow", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["moved"] is False
    tags = client.get_model_version(name, v2).tags
    assert tags["nerflow.promotion"] == "rejected" and tags["nerflow.reason"] == "rejected by dana: too slow"
    assert str(champion_of(name)) == "1" and len(entries(name)) == 1
    assert cli.main(["reject", name, v2, "--reason", "twice"]) == EXIT_REFUSED
    assert cli.main(["approve", name, "7", "--reason", "x"]) == EXIT_BAD_INPUT     # no such version
