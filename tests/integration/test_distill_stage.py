"""The optional `distill` stage through the real flow (issue 25): a student with fewer layers trained from the
fine-tuned model by the task's own training loop, cached under its own key, measured by the export stage as one
more runtime (`onnx-int8-distilled`) and served only by the rule (within `export.max_f1_drop` and faster than the
others), its curve and summary in the run. The template's training is reused: the stage starts from its weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nerflow.export import choose
from nerflow.flows import cli
from nerflow.plan import make_plan

from .corpus import copy_cache, tiny_config

NAME = "tiny-ner-distilled"


@pytest.fixture(scope="module")
def distilled(pipeline_result, tiny_corpus, corpus_model_dir, tmp_path_factory):
    from nerflow.flows.pipeline import pipeline

    template, _ = pipeline_result
    cache = tmp_path_factory.mktemp("distilled") / "cache"
    copy_cache(template.cache_dir, cache)
    cfg = tiny_config(tmp_path_factory.mktemp("distilled-cfg"), tiny_corpus, corpus_model_dir, cache,
                      "distill.enabled=true", "distill.layers=1", "distill.epochs=4", "distill.lr=0.003",
                      "export.enabled=true", "export.latency_requests=5", f"registry.model_name={NAME}")
    return cfg, pipeline(cfg)


def test_the_student_is_trained_from_the_fine_tuned_model_and_measured_as_a_runtime(distilled, pipeline_result):
    from transformers import AutoConfig

    cfg, result = distilled
    assert result.stages == {"validate": True, "tokenize": True, "train": True, "evaluate": True, "distill": False,
                             "export": False, "register": False, "promote": False}
    student = Path(result["distill"].model_dir)
    assert AutoConfig.from_pretrained(student).num_hidden_layers == 1
    assert AutoConfig.from_pretrained(result["train"].model_dir).num_hidden_layers == 2
    meta = json.loads((student / "nerflow.json").read_text())
    assert meta["distilled_from"] == result["train"].key and meta["distill_layers"] == 1
    # its work folder (checkpoints, the teacher's answers for a resumed attempt) goes when the stage is done
    assert not list((Path(cfg.cache_dir) / "distill").glob("*.work"))
    summary = result["distill"].summary
    assert (summary["layers"], summary["teacher_layers"], summary["kept"]) == (1, 2, [1])
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.tags["stage.distill"] == "computed"
    assert run.data.metrics["distill/best_score"] == pytest.approx(summary["best_score"])
    assert run.data.metrics["distill/teacher_score"] == pytest.approx(run.data.metrics["val/best_f1"])
    assert client.get_metric_history(result.run_id, "distill/val_f1")   # the loop's points, regrouped
    assert client.get_metric_history(result.run_id, "distill/loss")
    # the export stage measured the student beside the fine-tuned model's runtimes, and chose by the rule
    out = result["export"]
    row = out.rows["onnx-int8-distilled"]
    assert set(row) == {"val_f1", "test_f1", "mb", "words_per_s", "p50_ms", "p99_ms"}
    assert row["mb"] < out.rows["onnx-int8"]["mb"]
    assert (out.runtime, out.reason) == choose(out.rows, cfg.export.max_f1_drop)
    assert "onnx-int8-distilled" in out.reason
    assert {"export/onnx_int8_distilled_val_f1", "export/onnx_int8_distilled_words_per_s"} <= set(run.data.metrics)
    served = Path(out.served_dir)
    chosen = json.loads((served / "runtime.json").read_text())
    assert chosen["runtime"] == out.runtime
    assert [p.name for p in (served / "onnx").iterdir()] == [Path(chosen["file"]).name]
    version = client.get_model_version(NAME, str(result["register"].version))
    assert version.tags["nerflow.runtime"] == out.runtime and version.tags["nerflow.runtime_reason"] == out.reason
    assert "| onnx-int8-distilled" in version.description   # the model card's serving table


def test_the_student_has_its_own_key_and_runs_lists_the_stage(distilled, pipeline_result, capsys):
    from nerflow.flows.pipeline import pipeline

    cfg, result = distilled
    again = pipeline(cfg)   # nothing changed: reused whole
    assert again.stages["distill"] and again["distill"].key == result["distill"].key
    other = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"temperature": 3.0})})
    assert make_plan(other).stages["distill"].key != result["distill"].key
    assert make_plan(other).stages["train"].key == result["train"].key        # the fine-tuning is not redone
    capsys.readouterr()
    assert cli.main(["runs", "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows[result.run_id]["stages"]) == ["validate", "tokenize", "train", "evaluate", "distill", "export",
                                                   "register", "promote"]
    assert "distill" not in rows[pipeline_result[1].run_id]["stages"]


def test_a_text_classifier_distills_with_pooled_windows(textcat_run, textcat_reviews, textcat_model_dir,
                                                         tmp_path_factory):
    """Text classification through the same stage: windows pooled per review in training too (the task's forward
    takes the windows' owner out of the batch; the teacher sees the same batch), the student measured by export."""
    from transformers import AutoConfig

    from nerflow.flows.pipeline import pipeline

    from .textcat_corpus import textcat_config

    template, _ = textcat_run
    cache = tmp_path_factory.mktemp("textcat-distilled") / "cache"
    copy_cache(template.cache_dir, cache)
    cfg = textcat_config(tmp_path_factory.mktemp("textcat-distilled-cfg"), textcat_reviews, textcat_model_dir, cache,
                         "tokenize.window_training=pooled", "train.epochs=2", "distill.enabled=true",
                         "distill.layers=1", "distill.epochs=2", "distill.lr=0.003", "export.enabled=true",
                         "export.latency_requests=3", "registry.model_name=tiny-textcat-distilled")
    result = pipeline(cfg)
    assert not result.stages["distill"] and result.stages["validate"]
    assert AutoConfig.from_pretrained(result["distill"].model_dir).num_hidden_layers == 1
    assert result["distill"].summary["epochs_run"] == 2
    row = result["export"].rows["onnx-int8-distilled"]
    assert 0.0 <= row["val_f1"] <= 1.0 and row["texts_per_s"] > 0
    assert (result["export"].runtime, result["export"].reason) == choose(result["export"].rows, 0.5)
