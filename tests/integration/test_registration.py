"""Registration is all or nothing: a failure after the version exists deletes that version again."""
from __future__ import annotations

import pytest
from mlflow import MlflowClient

from .corpus import tiny_config


def test_failure_after_version_creation_leaves_no_version(monkeypatch, tmp_path, tiny_corpus, corpus_model_dir,
                                                          cache_dir, mlflow_store):
    from nerflow.flows.pipeline import ner_pipeline

    def broken_alias(self, name, alias, version):
        assert self.get_model_version(name, version)            # the version did exist when this ran
        raise ConnectionError("registry went away while setting the alias")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", broken_alias)
    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, cache_dir, "registry.model_name=rollback-ner")
    with pytest.raises(ConnectionError):
        ner_pipeline(cfg)
    client = MlflowClient()
    assert client.search_model_versions("name='rollback-ner'") == []
    run = client.search_runs([client.get_experiment_by_name("nerflow-test").experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert run.info.status == "FAILED"
