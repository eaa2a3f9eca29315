"""Domain adaptation through the real flow: the optional `pretrain` stage (on a file of the domain's text) and
LoRA (`train.adapter: lora`) in one pipeline run on the tiny corpus, the template's validate and tokenize reused.
The run logs pretraining's curve, keeps the adapter as its own artifact while the version serves the merged model,
`rerun --from pretrain` recomputes from there in the same MLflow run, and a run without the stage refuses it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nerflow.flows import cli

from .corpus import copy_cache, tiny_config

NAME = "tiny-ner-adapted"


@pytest.fixture(scope="module")
def adapted(pipeline_result, tiny_corpus, corpus_model_dir, tmp_path_factory):
    from nerflow.flows.pipeline import pipeline

    template, _ = pipeline_result
    cache = tmp_path_factory.mktemp("adapted") / "cache"
    copy_cache(template.cache_dir, cache)
    folder = tmp_path_factory.mktemp("adapted-cfg")
    unlabelled = folder / "unlabelled.txt"   # the domain's prose: the corpus's words, other sentences
    unlabelled.write_text("".join(f"{who} met {whom} of {org} in {where} on Monday .\n"
                                  for who, whom in (("Maria Lopez", "John Smith"), ("Anna Schmidt", "Pedro Alvarez"))
                                  for org in ("Globex", "Initech", "Acme Corp")
                                  for where in ("Berlin", "Paris")))
    cfg = tiny_config(folder, tiny_corpus, corpus_model_dir, cache, "pretrain.enabled=true",
                      f"pretrain.text=[{unlabelled}]", "pretrain.epochs=1", "pretrain.heldout_every=4",
                      "train.adapter=lora", "train.epochs=2", f"registry.model_name={NAME}")
    return cfg, pipeline(cfg)


def test_pretraining_and_lora_run_in_the_flow_and_the_version_serves_the_merged_model(adapted):
    cfg, result = adapted
    assert result.stages == {"validate": True, "tokenize": True, "pretrain": False, "train": False,
                             "evaluate": False, "register": False, "promote": False}
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.tags["stage.pretrain"] == "computed"
    assert run.data.metrics["pretrain/texts"] == 12 and run.data.metrics["pretrain/steps"] > 0
    assert client.get_metric_history(result.run_id, "pretrain/val_loss")   # the loop's points, renamed
    served = Path(result["train"].model_dir)
    assert json.loads((served / "nerflow.json").read_text())["pretrained"] == result["pretrain"].key   # started there
    # the adapter with its head: a run artifact of its own, not part of the served folder
    logged = {a.path for a in client.list_artifacts(result.run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= logged
    assert not (served / "adapter").exists()
    version = client.get_model_version(NAME, str(result["register"].version))
    assert version.tags["nerflow.adapter"] == f"runs:/{result.run_id}/adapter"
    assert int(version.tags["nerflow.adapter_bytes"]) == run.data.metrics["train/adapter_bytes"] > 0
    assert 0 < run.data.metrics["train/trainable_parameters"] < run.data.metrics["train/frozen_parameters"]


def test_rerun_from_pretrain_recomputes_from_there_and_runs_lists_the_stage(adapted, pipeline_result, tmp_path,
                                                                            monkeypatch, capsys):
    cfg, result = adapted
    monkeypatch.chdir(tmp_path)   # the config comes from the run
    assert cli.main(["rerun", result.run_id, "--from", "pretrain"]) == 0
    run = MlflowClient().get_run(result.run_id)
    assert run.data.tags["nerflow.attempts"] == "2" and run.info.status == "FINISHED"
    assert {s: run.data.tags[f"stage.{s}"] for s in ("validate", "tokenize", "pretrain", "train", "evaluate")} == {
        "validate": "reused", "tokenize": "reused", "pretrain": "computed", "train": "computed",
        "evaluate": "computed"}
    capsys.readouterr()
    assert cli.main(["runs", "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows[result.run_id]["stages"]) == ["validate", "tokenize", "pretrain", "train", "evaluate",
                                                   "register", "promote"]
    template = pipeline_result[1]
    assert "pretrain" not in rows[template.run_id]["stages"]
    # a run without the stage: one clear refusal naming the key that turns it on, nothing started
    attempts = MlflowClient().get_run(template.run_id).data.tags.get("nerflow.attempts")
    assert cli.main(["rerun", template.run_id, "--from", "pretrain"]) != 0
    err = capsys.readouterr().err
    assert f"run {template.run_id} has no stage 'pretrain': pretrain.enabled was off" in err
    assert MlflowClient().get_run(template.run_id).data.tags.get("nerflow.attempts") == attempts
