"""`train.devices: 2` through the real flow: torchrun starts two gloo processes, and the pipeline run still has one
MLflow run with rank 0's metrics (each point once) and registers one model version."""
from __future__ import annotations

from mlflow import MlflowClient

from .corpus import tiny_config


def test_two_training_processes_give_one_run_and_one_version(tmp_path, tiny_corpus, corpus_model_dir, mlflow_store):
    from nerflow.flows.pipeline import pipeline

    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, tmp_path / "cache", "experiment=nerflow-ddp",
                      "registry.model_name=tiny-ddp", "train.devices=2", "train.epochs=4", "train.log_every=2")
    result = pipeline(cfg)
    client = MlflowClient()
    versions = client.search_model_versions("name='tiny-ddp'")
    assert [int(v.version) for v in versions] == [result["register"].version] == [1]
    runs = client.search_runs([client.get_experiment_by_name("nerflow-ddp").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == result.run_id
    run = runs[0]
    assert run.data.tags["train.world_size"] == "2"
    steps = int(run.data.metrics["train/steps"])
    losses = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(losses) == list(range(2, steps + 1, 2))   # rank 0's points, each once
    assert len(client.get_metric_history(run.info.run_id, "val/f1")) == 4
