"""Registered means this register key on this registry: a stage cache that registered `tiny-ner` version 1 on one
tracking store says nothing about another store (the team server) where someone else's `tiny-ner` version 1
exists. Pointed at that store, `nerflow run` registers there, and the gate decides there, instead of answering
"already registered ... version 1"."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from nerflow import cache
from nerflow.config import resolved_dict
from nerflow.flows import cli
from nerflow.plan import make_plan
from nerflow.prefect_tasks import register, tracking
from nerflow.prefect_tasks.register import KEY_TAG, WEIGHTS_TAG

from .corpus import copy_cache


@pytest.fixture(scope="module")
def other_store(tmp_path_factory, pipeline_result) -> str:
    """Another tracking store holding someone else's version of the template's model name, under the template's
    version number: another register key, other weights."""
    cfg, first = pipeline_result
    root = tmp_path_factory.mktemp("other-mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    run = client.create_run(client.create_experiment("someone-else", artifact_location=tracking.artifact_root(uri)))
    client.create_registered_model(cfg.registry.model_name)
    for _ in range(first["register"].version):
        version = client.create_model_version(cfg.registry.model_name, f"{run.info.artifact_uri}/model",
                                              run_id=run.info.run_id,
                                              tags={KEY_TAG: "someone-elses-key", WEIGHTS_TAG: "0" * 64})
    assert int(version.version) == first["register"].version
    return uri


@pytest.fixture
def pointed_at(monkeypatch, mlflow_store):
    """Point nerflow at a store for the rest of the test; the session's store again afterwards (the MLflow client's
    global URI too, which later tests read)."""
    def point(uri: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        tracking.configure()

    yield point
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    tracking.configure()


@pytest.fixture
def copied(pipeline_result, tmp_path) -> Iterator:
    """The template's config on a copy of its stage cache: every stage complete, registered on the session store."""
    cfg, _ = pipeline_result
    folder = tmp_path / "cache"
    copy_cache(cfg.cache_dir, folder)
    yield cfg.model_copy(update={"cache_dir": folder})


def test_run_against_another_registry_registers_there(copied, other_store, pointed_at, tmp_path, capsys):
    cfg, name = copied, copied.registry.model_name
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(resolved_dict(cfg)))
    key = make_plan(cfg).stages["register"].key

    pointed_at(other_store)
    assert cli.main(["run", str(path)]) == 0
    said = capsys.readouterr()
    assert "already registered" not in said.out and "nothing to do" not in said.err, said.out
    client = MlflowClient(other_store, other_store)
    ours = register.newest_version(client, name, {KEY_TAG: key})
    assert ours is not None and int(ours.version) == len(client.search_model_versions(f"name='{name}'")) > 1
    assert f"registered: {name} version {ours.version} (alias @{cfg.registry.alias})" in said.out
    tags = client.get_run(ours.run_id).data.tags
    assert {s: tags[f"stage.{s}"] for s in make_plan(cfg).graph.names} == {
        "validate": "reused", "tokenize": "reused", "train": "reused", "evaluate": "reused",
        "register": "computed", "promote": "computed"}   # the gate decided about this version, on this registry
    assert client.get_model_version(name, ours.version).tags["nerflow.promotion"] in ("accepted", "rejected")
    record = json.loads((cache.lookup(cfg.cache_dir, "register", key) / "output.json").read_text())
    assert (record["registry"], record["version_key"]) == (tracking.registry_id(other_store), key)

    assert cli.main(["run", str(path)]) == 0        # and now it is registered there: nothing to do
    assert f"already registered: {name} version {ours.version}" in capsys.readouterr().out


def test_an_entry_from_before_entries_named_their_registry_holds_where_the_version_has_its_key(
        pipeline_result, other_store, pointed_at, tmp_path, mlflow_store):
    cfg, first = pipeline_result
    step = make_plan(cfg).stages["register"]
    written = json.loads((Path(first["register"].path) / "output.json").read_text())
    old = {k: v for k, v in written.items() if k not in ("registry", "version_key")}   # as older nerflow wrote it
    for fields, where, valid in ((written, mlflow_store, True), (old, mlflow_store, True),
                                 (written, other_store, False), (old, other_store, False)):
        entry = tmp_path / f"entry-{len(fields)}-{where == other_store}"
        entry.mkdir()
        (entry / "output.json").write_text(json.dumps(fields))
        pointed_at(where)
        assert register.still_valid(None, step, entry) is valid, (fields, where)
