"""The whole flow on a tiny corpus a tiny model can overfit: real Prefect, real MLflow, registered model loaded back."""
from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from nerflow.data import read_conll
from nerflow.evaluate import score
from nerflow.schemes import entity_spans
from nerflow.tokenization import Encoder

from .corpus import LONG, tiny_config

@pytest.fixture(scope="session")
def pipeline_result(tmp_path_factory, tiny_corpus, corpus_model_dir, mlflow_store, cache_dir):
    from nerflow.flows.pipeline import ner_pipeline

    cfg = tiny_config(tmp_path_factory.mktemp("cfg"), tiny_corpus, corpus_model_dir, cache_dir)
    return cfg, ner_pipeline(cfg)


def test_flow_registers_a_challenger_version_with_lineage_tags(pipeline_result):
    cfg, result = pipeline_result
    client = MlflowClient()
    version = client.get_model_version_by_alias("tiny-ner", "challenger")
    assert int(version.version) == result["version"]
    for tag in ("data_hash", "config_hash", "git_commit", "base_model", "prefect_flow_run_id", "mlflow_run_id"):
        assert version.tags.get(tag), tag
    assert version.tags["prefect_flow_run_id"] == result["flow_run_id"]
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "25"
    assert {"test_f1", "validation_f1", "train_samples_per_s", "stage_train_seconds"} <= set(run.data.metrics)
    assert len(client.get_metric_history(result["run_id"], "train_loss")) >= 5
    artifacts = {a.path for d in ("config", "validation", "evaluation") for a in client.list_artifacts(result["run_id"], d)}
    assert {"config/resolved.yaml", "validation/report.json", "validation/report.html",
            "evaluation/test_report.json", "evaluation/test_confusion.png",
            "evaluation/test_predictions.conll"} <= artifacts
    assert {d.dataset.name.split("-")[0] for d in run.inputs.dataset_inputs} == {"train", "validation", "test"}


def test_entity_across_window_edge_is_served_with_exact_char_offsets(pipeline_result, corpus_tokenizer):
    words = [w for w, _ in LONG]
    windows = Encoder(corpus_tokenizer, 16, 4).encode(0, words, None)
    assert len(windows) == 2 and (windows[0].word_start, windows[0].word_end) == (0, 14)
    assert words[13:15] == ["Northwind", "Trading"]          # the entity straddles the first window's edge
    text = ("Yesterday in the morning Maria Lopez said that the board of the company Northwind Trading would meet "
            "in New Salem on Monday.")
    model = mlflow.pyfunc.load_model("models:/tiny-ner@challenger")
    (spans,) = model.predict([text])
    got = [(s["type"], s["start"], s["end"]) for s in spans]
    expected = [(t, text.index(e), text.index(e) + len(e))
                for t, e in [("PER", "Maria Lopez"), ("ORG", "Northwind Trading"), ("LOC", "New Salem")]]
    assert got == expected
    assert [s["text"] for s in spans] == ["Maria Lopez", "Northwind Trading", "New Salem"]
    assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)


def test_loaded_model_reproduces_logged_validation_f1(pipeline_result, tiny_corpus):
    _, result = pipeline_result
    sentences = read_conll(tiny_corpus / "valid.txt")
    texts = [" ".join(s.tokens) for s in sentences]
    model = mlflow.pyfunc.load_model("models:/tiny-ner@challenger")
    predicted = model.predict(texts, params={"pretokenized": True})
    pred_tags = []
    for s, text, spans in zip(sentences, texts, predicted):
        starts = [i for i, ch in enumerate(text) if i == 0 or text[i - 1] == " "]   # char offset of each token
        tags = ["O"] * len(s.tokens)
        for span in spans:
            first = starts.index(span["start"])
            last = max(i for i, st in enumerate(starts) if st < span["end"])
            tags[first] = f"B-{span['type']}"
            tags[first + 1:last + 1] = [f"I-{span['type']}"] * (last - first)
        pred_tags.append(tags)
    f1 = score([s.tags for s in sentences], pred_tags).f1
    logged = MlflowClient().get_run(result["run_id"]).data.metrics["validation_f1"]
    assert 0 < logged < 1          # the validation split holds unseen combinations: not a trivial 1.0
    assert f1 == pytest.approx(logged, abs=1e-9)


def test_second_run_reuses_every_stage_and_registers_nothing_new(pipeline_result):
    from nerflow.flows.pipeline import ner_pipeline

    cfg, first = pipeline_result
    again = ner_pipeline(cfg)
    assert again["stages"] == {"validate": True, "tokenize": True, "train": True, "evaluate": True, "register": True}
    assert again["metrics"] == first["metrics"]
    assert again["version"] == first["version"]
    assert len(MlflowClient().search_model_versions("name='tiny-ner'")) == 1
