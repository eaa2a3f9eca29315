"""The export stage through the real flow (issue 25): the fine-tuned model exported to ONNX fp32 and dynamic int8,
each scored on validation and test, the served runtime chosen on validation F1 and recorded on the version; the
registered pyfunc, the promotion gate and `nerflow predict` run the chosen runtime, and `--runtime` forces one.

Two runs: the template's training reused with the export on (its int8 model is the one served unless it lost more
than half a point), and a base model planted so that int8 quantization must destroy it (below) while its fp32
function is untouched: the compressed model that lost accuracy is not served, and the version says why."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from nerflow.flows import cli

from .corpus import copy_cache, tiny_config

NAME, PLANTED = "tiny-ner-exported", "tiny-ner-int8-hostile"
TEXTS = ["Maria Lopez visited Paris .", "Anna Schmidt works for Initech in Berlin ."]


@pytest.fixture(scope="module")
def exported(pipeline_result, tiny_corpus, corpus_model_dir, tmp_path_factory):
    from nerflow.flows.pipeline import pipeline

    template, _ = pipeline_result
    cache = tmp_path_factory.mktemp("exported") / "cache"
    copy_cache(template.cache_dir, cache)
    cfg = tiny_config(tmp_path_factory.mktemp("exported-cfg"), tiny_corpus, corpus_model_dir, cache,
                      "export.enabled=true", "export.latency_requests=5", f"registry.model_name={NAME}")
    return cfg, pipeline(cfg)


def plant_int8_outliers(src: Path, dst: Path) -> Path:
    """A copy of the tiny base model whose feed-forward output weights each hold one input column of 1000s, fed by
    an intermediate unit that is always exactly 0 (zero weights, bias -30: GELU(-30) underflows to 0). In fp32 the
    column multiplies 0 and changes nothing, and training leaves it (its gradient is exactly 0); int8 quantization
    scales every output channel of those weights to its 1000, so every other weight rounds to 0 and the layers'
    feed-forward output is lost."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(src)
    with torch.no_grad():
        for layer in model.encoder.layer:
            layer.intermediate.dense.weight.mul_(20.0)   # a feed-forward block the model leans on, so that losing
            layer.output.dense.weight.mul_(20.0)         # it costs F1 (the random init's is nearly silent)
            layer.intermediate.dense.weight[0].zero_()
            layer.intermediate.dense.bias[0] = -30.0
            layer.output.dense.weight[:, 0] = 1000.0
    model.save_pretrained(dst)
    for f in Path(src).glob("*token*"):
        shutil.copy2(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def planted(tiny_corpus, corpus_model_dir, tmp_path_factory, mlflow_store):
    from nerflow.flows.pipeline import pipeline

    base = plant_int8_outliers(corpus_model_dir, tmp_path_factory.mktemp("int8-hostile"))
    cfg = tiny_config(tmp_path_factory.mktemp("planted-cfg"), tiny_corpus, base,
                      tmp_path_factory.mktemp("planted") / "cache", "export.enabled=true",
                      "export.latency_requests=5", "train.epochs=12", f"registry.model_name={PLANTED}")
    return cfg, pipeline(cfg)


def test_export_scores_each_runtime_with_the_evaluation_code_and_records_the_choice(exported):
    cfg, result = exported
    assert result.stages == {"validate": True, "tokenize": True, "train": True, "evaluate": True,
                             "export": False, "register": False, "promote": False}
    out = result["export"]
    rows, metrics = out.rows, MlflowClient().get_run(result.run_id).data.metrics
    # PyTorch's row is the evaluate stage's scores, recomputed through the same code
    assert rows["torch"]["val_f1"] == pytest.approx(metrics["val/best_f1"])
    assert rows["torch"]["test_f1"] == pytest.approx(metrics["test/f1"])
    # exported fp32 answers as PyTorch does (tolerance: no F1 difference on the tiny test split)
    assert rows["onnx"]["test_f1"] == pytest.approx(rows["torch"]["test_f1"])
    assert rows["onnx-int8"]["mb"] < rows["onnx"]["mb"]   # (the tiny model is mostly its unquantized embeddings)
    drop = (rows["torch"]["val_f1"] - rows["onnx-int8"]["val_f1"]) * 100
    assert out.runtime == ("onnx-int8" if drop <= 0.5 else "onnx")
    for runtime in ("torch", "onnx", "onnx_int8"):
        for measure in ("val_f1", "test_f1", "mb", "words_per_s", "p50_ms", "p99_ms"):
            assert f"export/{runtime}_{measure}" in metrics
    version = MlflowClient().get_model_version(NAME, str(result["register"].version))
    assert version.tags["nerflow.runtime"] == out.runtime
    assert version.tags["nerflow.runtime_reason"] == out.reason
    assert "## Serving" in version.description and f"Served by **{out.runtime}**" in version.description
    # the gate scored the served runtime: for fp32 exactly the export row (int8's activation scales are per batch
    # and the gate batches as `predict` does; test_the_gate_scores_the_runtime_that_will_be_served covers int8)
    if out.runtime == "onnx":
        assert result["promote"].decision["challenger_f1"] == pytest.approx(rows["onnx"]["test_f1"])
    served = Path(out.served_dir)
    assert json.loads((served / "runtime.json").read_text())["runtime"] == out.runtime
    assert sorted(p.name for p in (served / "onnx").iterdir()) == [Path(json.loads(
        (served / "runtime.json").read_text())["file"]).name]


def test_exported_fp32_tags_equal_pytorchs_on_the_test_split(exported):
    """Word by word on the test split, through the evaluate stage's windows and decoder: every tag the same."""
    from transformers import AutoModelForTokenClassification

    from nerflow.ner.data import read_split
    from nerflow.ner.evaluation import predict_split
    from nerflow.runtimes import OnnxModel

    cfg, result = exported
    validated, windows = Path(result["validate"].path), Path(result["tokenize"].path) / "test"
    labels = json.loads((validated / "labels.json").read_text())
    sentences = read_split(validated / "test.jsonl")
    torch_model = AutoModelForTokenClassification.from_pretrained(result["train"].model_dir)
    onnx_model = OnnxModel(Path(result["export"].path) / "onnx" / "model.onnx", len(labels))
    pytorch = predict_split(torch_model, sentences, windows, labels, 0, cfg.evaluate)
    onnx = predict_split(onnx_model, sentences, windows, labels, 0, cfg.evaluate)
    assert sum(len(s) for s in pytorch) > 50
    assert onnx == pytorch


def test_a_compressed_model_that_lost_f1_is_not_served_and_the_version_says_why(planted):
    cfg, result = planted
    out = result["export"]
    rows = out.rows
    assert rows["onnx"]["val_f1"] == pytest.approx(rows["torch"]["val_f1"])   # fp32 untouched by the plant
    assert rows["torch"]["val_f1"] - rows["onnx-int8"]["val_f1"] > 0.005       # int8 lost it
    assert out.runtime == "onnx"
    version = MlflowClient().get_model_version(PLANTED, str(result["register"].version))
    assert version.tags["nerflow.runtime"] == "onnx"
    reason = version.tags["nerflow.runtime_reason"]
    assert reason.startswith("onnx-int8 not served: validation F1") and "export.max_f1_drop 0.5" in reason
    requirements = Path(mlflow.artifacts.download_artifacts(f"models:/{PLANTED}/{version.version}/requirements.txt"))
    assert "onnxruntime==1.31.1" in requirements.read_text().split()


def test_the_gate_scores_the_runtime_that_will_be_served(planted, tmp_path_factory):
    """The planted model with int8 allowed to lose anything: int8 is served, and the promotion gate's test F1 is the
    int8 model's (far below PyTorch's), not the PyTorch weights' it could have scored instead."""
    from nerflow.flows.pipeline import pipeline

    cfg, _ = planted
    lenient = cfg.model_copy(update={"export": cfg.export.model_copy(update={"max_f1_drop": 100.0}),
                                     "registry": cfg.registry.model_copy(update={"model_name": f"{PLANTED}-lenient"}),
                                     "promote": cfg.promote.model_copy(update={"min_f1": 0.0})})
    result = pipeline(lenient)
    assert result.stages["train"] and not result.stages["export"]      # the same training, exported again
    rows = result["export"].rows
    assert result["export"].runtime == "onnx-int8"
    assert rows["torch"]["test_f1"] - rows["onnx-int8"]["test_f1"] > 0.1
    # int8's activation scales are per batch and the gate batches as `predict` does, so its F1 is int8's up to
    # batching; what matters is that it is far from the PyTorch weights' it did not score
    assert result["promote"].decision["challenger_f1"] < rows["torch"]["test_f1"] - 0.1


def answers(capsys, *args: str) -> list[list[tuple]]:
    """`nerflow predict` JSON lines as (type, start, end) per entity, scores kept apart."""
    capsys.readouterr()
    assert cli.main(["predict", args[0], *TEXTS, *args[1:]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [[(e["type"], e["start"], e["end"], round(e["score"], 2)) for e in line["entities"]] for line in lines]


@pytest.mark.parametrize("which", ["exported", "planted"])
def test_the_pyfunc_and_predict_answer_alike_on_either_runtime(which, request, capsys):
    cfg, result = request.getfixturevalue(which)
    uri = f"models:/{cfg.registry.model_name}/{result['register'].version}"
    torch_answers = answers(capsys, uri, "--runtime", "torch")
    served = answers(capsys, uri)
    assert answers(capsys, uri, "--runtime", "onnx") == served
    pyfunc = mlflow.pyfunc.load_model(uri).predict(TEXTS)
    assert [[(e["type"], e["start"], e["end"], round(e["score"], 2)) for e in text] for text in pyfunc] == served
    if result["export"].runtime == "onnx":   # fp32 both ways: the same entities (int8 may differ: it is served only
        assert [[e[:3] for e in t] for t in served] == [[e[:3] for e in t] for t in torch_answers]   # on val F1)


def test_predict_runtime_onnx_on_a_version_without_one_is_one_error(pipeline_result, capsys):
    cfg, result = pipeline_result   # exported nothing: export.enabled is off in the fixtures
    capsys.readouterr()
    assert cli.main(["predict", f"models:/tiny-ner/{result['register'].version}", "x", "--runtime", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no ONNX model to run" in err[0] and "--runtime torch" in err[0]


@pytest.fixture(scope="module")
def bf16_exported(pipeline_result, tiny_corpus, corpus_model_dir, tmp_path_factory):
    """The template's training exported with `export.bf16` and no int8: PyTorch in bf16 is measured and, within the
    drop, served. The CPU check is set to yes for the run, so that bf16 is measured on any CPU (emulated bf16 is
    slower, not different); serving on a CPU without bf16 instructions runs fp32 and gives the same answers here."""
    from nerflow.flows.pipeline import pipeline

    template, _ = pipeline_result
    cache = tmp_path_factory.mktemp("bf16") / "cache"
    copy_cache(template.cache_dir, cache)
    cfg = tiny_config(tmp_path_factory.mktemp("bf16-cfg"), tiny_corpus, corpus_model_dir, cache,
                      "export.enabled=true", "export.bf16=true", "export.quantize=false", "export.latency_requests=5",
                      "registry.model_name=tiny-ner-bf16")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("nerflow.export.native_bf16", lambda: True)
        return cfg, pipeline(cfg)


def test_bf16_is_measured_served_within_the_drop_and_answers_like_fp32(bf16_exported, capsys):
    cfg, result = bf16_exported
    assert result.stages["train"] and not result.stages["export"]
    out = result["export"]
    rows = out.rows
    assert set(rows) == {"torch", "torch-bf16", "onnx"}
    assert rows["torch-bf16"]["mb"] == rows["torch"]["mb"]          # the same weights, cast when loaded
    assert abs(rows["torch-bf16"]["test_f1"] - rows["torch"]["test_f1"]) <= 0.02   # bf16 rounding: a tag or two
    drop = (rows["torch"]["val_f1"] - rows["torch-bf16"]["val_f1"]) * 100
    assert out.runtime == ("torch-bf16" if drop <= 0.5 else "onnx")
    metrics = MlflowClient().get_run(result.run_id).data.metrics
    assert {"export/torch_bf16_val_f1", "export/torch_bf16_words_per_s"} <= set(metrics)
    served = Path(out.served_dir)
    assert json.loads((served / "runtime.json").read_text())["runtime"] == out.runtime
    uri = f"models:/{cfg.registry.model_name}/{result['register'].version}"
    requirements = Path(mlflow.artifacts.download_artifacts(f"{uri}/requirements.txt")).read_text().split()
    assert drop <= 0.5 and out.runtime == "torch-bf16"   # the tiny model's validation F1 is the same in bf16
    assert not (served / "onnx").exists()                # nothing of ONNX travels with it
    assert not any(r.startswith("onnxruntime") for r in requirements)
    served_answers = answers(capsys, uri)
    assert answers(capsys, uri, "--runtime", "torch-bf16") == served_answers
    pyfunc = mlflow.pyfunc.load_model(uri).predict(TEXTS)
    assert [[(e["type"], e["start"], e["end"], round(e["score"], 2)) for e in t] for t in pyfunc] == served_answers
    fp32 = answers(capsys, uri, "--runtime", "torch")
    assert [[e[:3] for e in t] for t in served_answers] == [[e[:3] for e in t] for t in fp32]   # the same entities


@pytest.fixture(scope="module")
def textcat_exported(textcat_run, textcat_reviews, textcat_model_dir, tmp_path_factory):
    from nerflow.flows.pipeline import pipeline

    from .textcat_corpus import textcat_config

    template, _ = textcat_run
    cache = tmp_path_factory.mktemp("textcat-exported") / "cache"
    copy_cache(template.cache_dir, cache)
    cfg = textcat_config(tmp_path_factory.mktemp("textcat-exported-cfg"), textcat_reviews, textcat_model_dir, cache,
                         "export.enabled=true", "export.latency_requests=5", "registry.model_name=tiny-textcat-onnx")
    return cfg, pipeline(cfg)


def test_a_text_classifier_is_exported_scored_and_served_alike_on_either_runtime(textcat_exported, capsys):
    cfg, result = textcat_exported
    out = result["export"]
    metrics = MlflowClient().get_run(result.run_id).data.metrics
    assert result.stages["train"] and not result.stages["export"]
    assert out.unit == "texts" and out.rows["torch"]["val_f1"] == pytest.approx(metrics["val/best_f1"])
    assert out.rows["onnx"]["test_f1"] == pytest.approx(out.rows["torch"]["test_f1"])
    assert {"export/onnx_int8_texts_per_s", "export/torch_p99_ms"} <= set(metrics)
    uri = f"models:/tiny-textcat-onnx/{result['register'].version}"
    assert MlflowClient().get_model_version("tiny-textcat-onnx", "1").tags["nerflow.runtime"] == out.runtime
    texts = ["A quiet, patient film that earns every minute.", "Dull and far too long."]

    def labels(*args: str) -> list[tuple[str, float]]:
        capsys.readouterr()
        assert cli.main(["predict", uri, *texts, *args]) == 0
        return [(r["label"], round(r["score"], 2)) for r in map(json.loads, capsys.readouterr().out.splitlines())]

    served, pytorch = labels(), labels("--runtime", "torch")
    assert labels("--runtime", "onnx") == served
    pyfunc = mlflow.pyfunc.load_model(uri).predict(texts)
    assert [(r["label"], round(r["score"], 2)) for r in pyfunc] == served
    if out.runtime == "onnx":
        assert [label for label, _ in served] == [label for label, _ in pytorch]


def test_explain_uses_the_fp32_weights_of_a_version_served_by_onnx(exported, capsys):
    """Attributions need gradients: `nerflow explain` loads the PyTorch weights whatever runtime serves the version."""
    cfg, result = exported
    assert result["export"].runtime != "torch"
    capsys.readouterr()
    assert cli.main(["explain", f"models:/{NAME}/{result['register'].version}", TEXTS[0], "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and all(line["attributions"] for line in lines)


def test_a_distilled_student_that_lost_f1_is_not_served_and_the_version_says_why(planted, tmp_path_factory):
    """The planted model's student keeps one of its layers, outliers and all: int8 destroys it as it destroys the
    fine-tuned model's, so the student is refused on validation F1 whatever its speed, and the version says why."""
    from nerflow.flows.pipeline import pipeline

    cfg, _ = planted
    student = cfg.model_copy(update={
        "distill": cfg.distill.model_copy(update={"enabled": True, "layers": 1, "epochs": 2}),
        "registry": cfg.registry.model_copy(update={"model_name": f"{PLANTED}-distilled"})})
    result = pipeline(student)
    assert result.stages["train"] and not result.stages["distill"] and not result.stages["export"]
    rows = result["export"].rows
    assert rows["torch"]["val_f1"] - rows["onnx-int8-distilled"]["val_f1"] > 0.005
    assert result["export"].runtime == "onnx"
    reason = MlflowClient().get_model_version(f"{PLANTED}-distilled", "1").tags["nerflow.runtime_reason"]
    assert reason.startswith("onnx-int8-distilled not served: validation F1") and "onnx-int8 not served" in reason
