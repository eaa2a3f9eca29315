"""Text classification through the real flow (Prefect test server, MLflow on sqlite, a tiny local model): it
registers, promotes and predicts by alias (in process, with `nerflow predict` and with `mlflow models serve`); the
gate judges a later version by macro and per-class F1; a failed stage reruns alone in the same MLflow run; bad input
stops with one error line and registers nothing."""
from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from nerflow.flows.errors import EXIT_BAD_INPUT
from nerflow.graph import PIPELINE

from .processes import nerflow_env, one_error, run
from .test_pipeline import METRICS_DOC
from .textcat_corpus import textcat_config

STAGES = PIPELINE.names

MODEL = "tiny-textcat"


@pytest.fixture(scope="module")
def reviews(textcat_reviews) -> Path:
    return textcat_reviews


@pytest.fixture(scope="module")
def first_run(textcat_run):
    return textcat_run


def documented_metrics(classes: set[str]) -> set[str]:
    """docs/metrics.md: the first table's `both` rows and the "Text classification runs" table, expanded."""
    text = METRICS_DOC.read_text()
    shared = text.split("\n## ", 1)[0]
    own = text.split("\n## Text classification runs", 1)[1].split("\n## ")[0]
    rows = [line for line in shared.splitlines() if line.startswith("| `") and line.rstrip().endswith("| both |")]
    rows += [line for line in own.splitlines() if line.startswith("| `")]
    keys: set[str] = set()
    for line in rows:
        name = line.split("`")[1]
        for placeholder, values in (("<TYPE>", classes), ("<split>", ("train", "validation", "test")),
                                    ("<stage>", STAGES)):
            if placeholder in name:
                name = {name.replace(placeholder, v) for v in values}
                break
        keys |= name if isinstance(name, set) else {name}
    return keys


def test_flow_registers_promotes_and_predicts_by_alias(first_run, mlflow_store, tmp_path):
    cfg, result = first_run
    client = MlflowClient()
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert str(version.version) == str(result["register"].version) == "1"
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "1"
    assert version.tags["nerflow.task"] == "text-classification" and version.tags["nerflow.promotion"] == "accepted"
    assert result["evaluate"].metrics["test/f1"] == result["evaluate"].metrics["test/f1_macro"] > 0.5
    run_ = client.get_run(result.run_id)
    logged = {k for k in run_.data.metrics if not k.startswith("system/")}
    expected = documented_metrics({"neg", "pos"})
    assert logged == expected, (sorted(logged - expected), sorted(expected - logged))
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert {"evaluation/test_confusion.png", "evaluation/test_reliability.png", "evaluation/test_worst.json",
            "evaluation/test_predictions.jsonl", "evaluation/validation_worst.json", "evaluation/errors.html",
            "evaluation/test_errors.json"} <= artifacts

    texts = ["the film was great and wonderful and moving", "dull and boring and tedious plot"]
    answers = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(texts)
    assert [a["label"] for a in answers] == ["pos", "neg"]
    assert all(abs(sum(a["scores"].values()) - 1) < 1e-4 and a["score"] == max(a["scores"].values())
               for a in answers)
    done = run(["predict", f"models:/{MODEL}@champion", *texts, "--json"], tmp_path, nerflow_env(mlflow_store))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["text"], line["label"]) for line in lines] == list(zip(texts, ["pos", "neg"]))
    assert set(lines[0]) == {"text", "label", "score", "scores"}
    # the closing summary counts what this task answers (texts per label), nothing of NER's
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    assert summary["documents"] == 2 and summary["label_pos"] == summary["label_neg"] == 1
    assert not [key for key in summary if "entit" in key], summary


def test_mlflow_models_serve_answers_as_nerflow_predict(first_run, mlflow_store, tmp_path, capsys):
    """`mlflow models serve` of the champion answers each text with the label, score and per-label scores that
    `nerflow predict` gives; a malformed request gets a 4xx."""
    from nerflow.flows import cli
    from nerflow.flows.prefect_server import free_port

    from .test_serve import request, start_server, stop_server, wait_ready

    uri, texts = f"models:/{MODEL}@champion", ["a great and wonderful film", "a dull and tedious plot"]
    port, log_path = free_port(), tmp_path / "serve.log"
    proc = start_server(uri, port, log_path, mlflow_store)
    try:
        capsys.readouterr()
        assert cli.main(["predict", uri, *texts]) == 0                   # meanwhile, in-process
        expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        wait_ready(proc, port, log_path)
        status, body = request(port, json.dumps({"inputs": texts}).encode())
        assert status == 200, body
        served = json.loads(body)["predictions"]
        assert [s["label"] for s in served] == [e["label"] for e in expected] == ["pos", "neg"]
        for answer, local in zip(served, expected):
            assert set(answer) == {"label", "score", "scores"} and answer["scores"].keys() == local["scores"].keys()
            assert answer["score"] == pytest.approx(local["score"], abs=1e-6)
            assert all(answer["scores"][k] == pytest.approx(v, abs=1e-6) for k, v in local["scores"].items())
        status, body = request(port, b"{not json")
        assert 400 <= status < 500 and "error_code" in json.loads(body), (status, body)
    finally:
        stop_server(proc)
    assert proc.poll() is not None


def test_the_gate_scores_texts_like_evaluation_with_nerflows_own_code(first_run):
    """The registered version's folder, checked against its stored hash and loaded by nerflow's classifier, predicts
    through the served-scorer protocol (nerflow.scoring) what the evaluate stage predicted on the test split."""
    from nerflow.prefect_tasks import gate_scoring

    from .served import stage_output

    cfg, result = first_run
    split = stage_output(cfg, result.run_id, "validate") / "test.jsonl"
    version = str(result["register"].version)
    scored = gate_scoring.score_versions(MODEL, [version], split, "text-classification")[version]
    assert sorted(scored["labels"]) == ["neg", "pos"] and scored["multi_label"] is False
    with (stage_output(cfg, result.run_id, "evaluate") / "test_predictions.jsonl").open() as f:
        evaluated = [json.loads(line)["predicted"] for line in f]
    assert scored["pred"] == evaluated and len(evaluated) > 0


def test_a_worse_version_is_rejected_and_the_champion_stays(first_run):
    """The same gate as for entity types, on macro and per-class F1: a model trained for one step at a tiny
    learning rate scores at chance and must not take @champion."""
    from nerflow.flows.pipeline import pipeline

    cfg, first = first_run
    worse = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 1e-7, "epochs": 1})})
    result = pipeline(worse)
    client = MlflowClient()
    assert result["register"].version == 2 and result["promote"].decision["decision"] == "rejected"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert client.get_model_version(MODEL, "2").tags["nerflow.promotion"] == "rejected"
    rows = {row["type"] for row in result["promote"].decision["rows"]}
    assert rows == {"neg", "pos"}
    assert result["promote"].decision["champion_f1"] == pytest.approx(first["evaluate"].metrics["test/f1"], abs=1e-6)


def test_a_failed_stage_reruns_alone_in_the_same_mlflow_run(tmp_path, reviews, textcat_model_dir, monkeypatch):
    """The shared rerun behaviour, for text classification: training fails once; the same command reuses
    validate and tokenize, trains, and continues the MLflow run as attempt 2."""
    from nerflow.flows.pipeline import pipeline
    from nerflow.textcat import training

    cfg = textcat_config(tmp_path, reviews, textcat_model_dir, tmp_path / "cache", "registry.model_name=tc-rerun",
                         "experiment=nerflow-textcat-rerun")
    original, calls = training.train_job, []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected failure in train")
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train_job", fail_once)
    with pytest.raises(RuntimeError, match="injected failure in train"):
        pipeline(cfg)
    result = pipeline(cfg)
    assert result.stages == {"validate": True, "tokenize": True, "train": False, "evaluate": False,
                                "register": False, "promote": False}
    client = MlflowClient()
    (only,) = client.search_runs([client.get_experiment_by_name("nerflow-textcat-rerun").experiment_id])
    assert only.info.run_id == result.run_id and only.data.tags["nerflow.attempts"] == "2"
    assert only.info.status == "FINISHED" and len(calls) == 2


def bad_input(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A config and corpus with one defect, and the error it must give."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"text": "a great film", "label": "pos"}, {"text": "a dull film", "label": "neg"}] * 3
    files = {name: list(rows) for name in ("train", "valid", "test")}
    fmt, expected = "jsonl", ""
    if case == "empty-text":
        files["train"][3] = {"text": "  ", "label": "neg"}
        expected = r"train.jsonl:4: \[text_not_empty\]"
    elif case == "unknown-label":
        files["test"][2] = {"text": "a fine film", "label": "mixed"}
        expected = r"test.jsonl:3: \[label_in_set\]"
    elif case == "missing-label-column":
        fmt, expected = "csv", r"train.csv:1: .*data.label_column"
    elif case == "empty-folder":
        fmt, expected = "folders", r"no documents"
    if fmt == "jsonl":
        for name, docs in files.items():
            (data / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        paths = "  train: train.jsonl\n  validation: valid.jsonl\n  test: test.jsonl\n"
    elif fmt == "csv":
        for name in files:
            (data / f"{name}.csv").write_text("text,sentiment\na great film,pos\na dull film,neg\n")
        paths = "  train: train.csv\n  validation: valid.csv\n  test: test.csv\n"
    else:
        (data / "pos").mkdir()
        (data / "neg").mkdir()
        paths = "  train: .\n"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"task: text-classification\nexperiment: nerflow-textcat-bad\ncache_dir: {tmp_path / 'cache'}\n"
                   f"registry:\n  model_name: tc-bad-{case}\ndata:\n  format: {fmt}\n  dir: {data}\n{paths}")
    return cfg, expected


@pytest.mark.parametrize("case,command", [("empty-text", "run"), ("unknown-label", "validate"),
                                          ("missing-label-column", "run"), ("empty-folder", "run")])
def test_bad_input_gives_one_error_line_and_registers_nothing(case, command, tmp_path, textcat_model_dir,
                                                              mlflow_store):
    """`run` stops in the validate stage (a failed check) or before it (an unreadable input); `validate` runs the
    same reading and checks without a pipeline run (cheaper, for the second check failure)."""
    cfg, expected = bad_input(tmp_path, case)
    result = run([command, str(cfg), f"model.name_or_path={textcat_model_dir}"], tmp_path, nerflow_env(mlflow_store))
    if command == "validate":   # it lists every problem on stdout; its one error line counts them
        one_error(result, EXIT_BAD_INPUT, r"^error: data validation failed: 1 problem\(s\)")
        assert re.search(expected.removeprefix("^error: "), result.stdout, re.M), result.stdout
    else:
        one_error(result, EXIT_BAD_INPUT, expected)
    assert MlflowClient().search_model_versions(f"name='tc-bad-{case}'") == []
