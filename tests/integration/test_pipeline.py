"""The whole flow on a tiny corpus a tiny model can overfit: real Prefect, real MLflow, registered model loaded back."""
from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from nerflow.ner.data import read_conll
from nerflow.ner.evaluate import score
from nerflow.ner.tokenization import Encoder
from nerflow.prefect_tasks import tracking

from .corpus import LONG, copy_cache

METRICS_DOC = Path(__file__).parents[2] / "docs" / "metrics.md"

def test_flow_registers_a_challenger_version_with_lineage_tags(pipeline_result):
    cfg, result = pipeline_result
    client = MlflowClient()
    version = client.get_model_version_by_alias("tiny-ner", "challenger")
    assert int(version.version) == result["register"].version
    for tag in ("data_hash", "config_hash", "git_commit", "base_model", "prefect_flow_run_id", "mlflow_run_id"):
        assert version.tags.get(tag), tag
    assert version.tags["prefect_flow_run_id"] == result.flow_run_id
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "25"
    assert {"test/f1", "val/best_f1", "train/samples_per_s", "stage/train_seconds"} <= set(run.data.metrics)
    assert len(client.get_metric_history(result.run_id, "train/loss")) >= 5
    artifacts = {a.path for d in ("config", "validation", "evaluation")
                 for a in client.list_artifacts(result.run_id, d)}
    assert {"config/resolved.yaml", "validation/report.json", "validation/report.html",
            "evaluation/test_report.json", "evaluation/test_confusion.png",
            "evaluation/test_predictions.conll", "evaluation/errors.html", "evaluation/test_errors.json",
            "evaluation/validation_errors.json"} <= artifacts
    assert {d.dataset.name.split("-")[0] for d in run.inputs.dataset_inputs} == {"train", "validation", "test"}


def test_prefect_run_page_shows_each_stage_result_and_the_gate_decision(pipeline_result):
    """The flow run's Prefect artifacts (its page's Artifacts tab), read back from the session's Prefect server:
    one per stage (computed or reused, key, summary lines) and the promotion decision with its comparison."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    cfg, result = pipeline_result
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[result.flow_run_id])))
    by_key = {a.key: a for a in found}
    stages = list(result.outputs)
    assert set(by_key) == {f"tiny-ner-{s}" for s in stages} | {"tiny-ner-promotion"}, sorted(by_key)
    assert all(a.type == "markdown" and a.task_run_id for a in found)   # each on its stage's task run too
    for stage, output in result.outputs.items():
        text = by_key[f"tiny-ner-{stage}"].data
        assert f"Stage `{stage}`: computed" in text and f"key: `{output.key}`" in text, text
    assert "overall" in by_key["tiny-ner-evaluate"].data   # the evaluation table of the run summary
    assert f"registered: tiny-ner version {result['register'].version}" in by_key["tiny-ner-register"].data
    decision, promoted = by_key["tiny-ner-promotion"].data, result["promote"].decision
    assert f"to @{promoted['alias']}: {promoted['decision']}" in decision and promoted["reason"] in decision
    assert "| type | support | chal. P |" in decision   # promotion.comparison_markdown's table

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
    logged = MlflowClient().get_run(result.run_id).data.metrics["val/best_f1"]
    assert 0 < logged < 1          # the validation split holds unseen combinations: not a trivial 1.0
    assert f1 == pytest.approx(logged, abs=1e-9)


def test_second_run_reuses_every_stage_and_registers_nothing_new(pipeline_result):
    from nerflow.flows.pipeline import pipeline

    cfg, first = pipeline_result
    again = pipeline(cfg)
    assert again.stages == {"validate": True, "tokenize": True, "train": True, "evaluate": True, "register": True,
                               "promote": True}
    assert again["evaluate"].metrics == first["evaluate"].metrics
    assert again["register"].version == first["register"].version
    assert len(MlflowClient().search_model_versions("name='tiny-ner'")) == 1


def test_a_toy_stage_runs_through_the_flow_with_no_other_change(pipeline_result, tmp_path):
    """The flow body is the graph: a test-only graph with one more stage (tests/unit/toy_stage.py) runs it after the
    stages it consumes, here on a copy of the template's cache, so every pipeline stage is reused."""

    from nerflow.flows.commands.run import format_summary
    from nerflow.flows.pipeline import pipeline

    cfg, first = pipeline_result
    cache = tmp_path / "cache"
    copy_cache(cfg.cache_dir, cache)
    result = pipeline(cfg.model_copy(update={"cache_dir": cache}), graph="tests.unit.toy_stage:GRAPH")
    assert result.stages == {"validate": True, "tokenize": True, "train": True, "evaluate": True, "register": True,
                             "promote": True, "count": False}
    sizes = result["validate"].sizes
    assert result["count"].examples == sizes and sum(sizes.values()) > 0
    assert f"counted:    {sum(sizes.values())} sentences" in format_summary(result, cfg.task)
    tags = MlflowClient().get_run(result.run_id).data.tags
    assert tags["stage.count"] == "computed" and tags["stage.count.key"] == result["count"].key


def catalogue(types: set[str], splits: set[str], stages: set[str]) -> set[str]:
    """docs/metrics.md's table, each `<TYPE>` / `<split>` / `<stage>` expanded: the keys a full run must log."""
    keys: set[str] = set()
    table = METRICS_DOC.read_text().split("\n## ")[0]   # the catalogue; later sections have tables of their own
    for line in table.splitlines():
        if line.startswith("| `"):
            names = {line.split("`")[1]}
            for placeholder, values in (("<TYPE>", types), ("<split>", splits), ("<stage>", stages)):
                names = {n.replace(placeholder, v) for n in names for v in values} if any(
                    placeholder in n for n in names) else names
            keys |= names
    return keys


def test_run_logs_exactly_the_documented_metrics(pipeline_result):
    from nerflow.graph import PIPELINE

    STAGES = PIPELINE.names

    _, result = pipeline_result
    client = MlflowClient()
    run = client.get_run(result.run_id)
    logged = {k for k in run.data.metrics if not k.startswith("system/")}   # MLflow's own: docs/metrics.md
    expected = catalogue({"PER", "ORG", "LOC", "PRODUCT"}, {"train", "validation", "test"}, set(STAGES))
    assert logged == expected, (sorted(logged - expected), sorted(expected - logged))
    # one prefix per section, and each step-0 metric is one point: nothing logged twice under one name
    assert {k.split("/")[0] for k in logged} == {"train", "val", "test", "data", "tokenize", "stage"}
    loop = {"train/loss", "train/lr", "train/epoch", "val/f1", "val/precision", "val/recall"}
    for key in sorted(logged - loop - {f"stage/{s}_seconds" for s in STAGES}):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0], key
    epochs = client.get_metric_history(run.info.run_id, "train/epoch")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/f1")] == [m.step for m in epochs]
    best_epoch = int(run.data.metrics["train/best_epoch"])
    (best_step,) = [m.step for m in epochs if m.value == best_epoch]
    val_f1 = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/f1")}
    assert val_f1[best_step] == pytest.approx(run.data.metrics["val/best_f1"], abs=1e-9)   # CPU: the same weights


def test_run_page_has_source_description_and_log(pipeline_result):
    cfg, result = pipeline_result
    client = MlflowClient()
    run = client.get_run(result.run_id)
    tags = run.data.tags
    assert tags["mlflow.user"] and tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    # MLflow's UI shows a LOCAL source from its last `/` on: a source without one is shown whole
    assert "/" not in tags["mlflow.source.name"] and tags["nerflow.command"]
    # the name says what differs: model, data, seed, start (UTC)
    model, data = Path(cfg.model.name_or_path).name, Path(cfg.data.dir).name
    assert re.fullmatch(rf"{re.escape(model)} · {re.escape(data)} · seed {cfg.seed} · \d\d-\d\d \d\d:\d\d",
                        run.info.run_name), run.info.run_name
    # the experiment opens in MLflow's model-training view, not the GenAI one
    kind = client.get_experiment(run.info.experiment_id).tags.get(tracking.EXPERIMENT_KIND_TAG)
    assert kind == "custom_model_development"
    # ... and the summary's link says so: MLflow 3.17's UI picks the view from the URL (tests/team/browser.py)
    from nerflow.flows.commands.run import format_summary

    browse = format_summary(result, cfg.task).splitlines()[-1]
    assert browse.endswith(f"/#/experiments/{run.info.experiment_id}/runs/{result.run_id}"
                           "?workflowType=machine_learning"), browse
    # no empty tags on the run or its version (a finished run has no failed_stage at all)
    version = client.get_model_version("tiny-ner", str(result["register"].version))
    assert [k for k, v in {**tags, **version.tags}.items() if v == ""] == [] and "failed_stage" not in tags
    # MLflow has no way to fill a version's "Created by": the creator is a tag and a line of its description
    assert version.user_id is None and version.tags["nerflow.created_by"] == tags["mlflow.user"]
    assert {"B-PER", "I-ORG", "B-LOC"} <= set(version.tags["nerflow.labels"].split(","))   # what the model predicts
    assert version.tags["nerflow.data_name"] == data
    page = client.get_registered_model("tiny-ner").description
    assert f"data: `{data}`" in page and "## Champion history" in page
    note = tags["mlflow.note.content"]
    assert "fine-tuned on" in note and f"version {result['register'].version}" in note and "test F1" in note
    (log,) = client.list_artifacts(result.run_id, "logs")
    assert log.path == "logs/1.log"
    text = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path=log.path)).read_text()
    assert "train: computing" in text and "registered tiny-ner version" in text


def test_an_experiment_made_elsewhere_becomes_model_training_unless_someone_chose_its_kind(mlflow_store, tmp_path):
    """In-process, no pipeline: nerflow marks the experiments it uses, and leaves a kind a user set alone."""
    client = tracking.configure()
    bare = client.create_experiment("made-in-the-ui", artifact_location=tmp_path.as_uri())
    chosen = client.create_experiment("genai-on-purpose", artifact_location=tmp_path.as_uri(),
                                      tags={tracking.EXPERIMENT_KIND_TAG: "genai_development"})
    assert tracking.experiment_id(client, "made-in-the-ui") == bare
    assert tracking.experiment_id(client, "genai-on-purpose") == chosen
    created = tracking.experiment_id(client, "made-by-nerflow")
    kinds = {e: client.get_experiment(e).tags.get(tracking.EXPERIMENT_KIND_TAG) for e in (bare, chosen, created)}
    assert kinds == {bare: "custom_model_development", chosen: "genai_development",
                     created: "custom_model_development"}
