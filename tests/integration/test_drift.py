"""`nerflow drift` on the session's registered versions (tiny-ner, tiny-textcat) against a real MLflow store: no drift
on texts drawn like the reference, drift on a shifted batch (`--fail-on-drift` exits 5), the reference computed once
from the version's own config and kept on its run, the monitoring run and its report, and bad input (exit 2, nothing
logged)."""
from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nerflow.flows import cli
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_DRIFT
from nerflow.prefect_tasks.monitoring import EXPERIMENT, REFERENCE_DIR

from .corpus import copy_cache, write_conll
from .drift_corpus import noisy, sentence, write_ner_documents, write_texts
from .textcat_corpus import review, write_reviews


def run_drift(capsys, *args: str) -> tuple[int, dict | str, str]:
    capsys.readouterr()
    code = cli.main(["drift", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args and code in (0, EXIT_DRIFT) else out), err


def monitoring_runs(client: MlflowClient) -> list:
    found = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.fixture(scope="module")
def ner_reference_config(tmp_path_factory, pipeline_result) -> Path:
    """The session's NER config, its validation split replaced by 400 sentences in 80 documents drawn like the
    batches below (the tiny corpus's own 8 validation sentences are too few to compare with)."""
    root = tmp_path_factory.mktemp("drift-ner")
    rng = random.Random(7)
    docs = [[sentence(rng) for _ in range(5)] for _ in range(80)]
    write_ner_documents(root / "valid.txt", docs)
    write_conll(root / "train.txt", [s for doc in docs[:4] for s in doc])
    write_conll(root / "test.txt", [s for doc in docs[4:8] for s in doc])
    cfg = root / "drift.yaml"
    cfg.write_text(f"experiment: nerflow-test\ndata:\n  dir: {root}\n  train: train.txt\n  validation: valid.txt\n"
                   "  test: test.txt\n")
    return cfg


def test_ner_no_drift_on_texts_drawn_like_the_reference_drift_on_shifted_ones(capsys, tmp_path, ner_reference_config,
                                                                                 mlflow_store):
    rng = random.Random(11)
    same = [" ".join(w for w, _ in sentence(rng)) for _ in range(200)]
    calm = write_texts(tmp_path / "calm.jsonl", same)
    shifted = write_texts(tmp_path / "shifted.jsonl", [noisy(t, rng) for t in same])
    # a family-wise 1% false-alarm level: a seeded run this test can rely on
    common = ("models:/tiny-ner/1", "monitor.alpha=0.01", "--config", str(ner_reference_config), "--json",
              "--fail-on-drift")

    code, calm_report, err = run_drift(capsys, *common, "--input", str(calm))
    assert code in (0, EXIT_DRIFT), err
    assert code == 0, [(c["name"], c["statistic"], c["p_value"]) for c in calm_report["checks"]]
    assert calm_report["drift"] is False and "Bonferroni" in calm_report["rule"]
    # calibrated on the hold-out, the descriptors on the training split's 20 sentences (4 documents) too
    assert "drawn by document (the descriptors' batches drawn from the training split's documents too: 20 texts)" \
        in calm_report["rule"], calm_report["rule"]
    names = {c["name"] for c in calm_report["checks"]}
    assert {"embedding", "descriptor:unknown_share", "descriptor:split_share", "descriptor:non_letter_share",
            "prediction:labels", "prediction:confidence"} <= names
    for check in calm_report["checks"]:
        assert {"statistic", "p_value", "alpha", "drift"} <= set(check) and check["alpha"] < 0.01
    assert calm_report["texts"] == 200 and calm_report["reference_texts"] == 200

    code, shifted_report, _ = run_drift(capsys, *common, "--input", str(shifted))
    assert code == EXIT_DRIFT and shifted_report["drift"] is True
    drifted = {c["name"] for c in shifted_report["checks"] if c["drift"]}
    assert {"embedding", "descriptor:non_letter_share"} <= drifted, shifted_report["checks"]

    # the texts to label first, on the check's run: in the drifted region, each a text of the batch
    assert shifted_report["labelling_texts"] == 50 and calm_report["labelling_texts"] == 0
    saved = MlflowClient().download_artifacts(shifted_report["mlflow_run_id"], "labelling/texts-to-label.jsonl",
                                              str(tmp_path))
    batch = [json.loads(line) for line in Path(saved).read_text().splitlines()]
    texts = {json.loads(line)["text"] for line in shifted.read_text().splitlines()}
    assert len(batch) == 50 and all(r["text"] in texts and r["drift_witness"] > 0 for r in batch)
    assert len({r["id"] for r in batch}) == 50 and {"predicted", "confidence"} <= set(batch[0])

    code, text, _ = run_drift(capsys, *common[:-2], "--input", str(shifted))   # no --json, no --fail-on-drift
    assert code == 0 and text.splitlines()[-1].startswith("drift: ") and "embedding" in text.splitlines()[-1]
    assert text.splitlines()[-2].startswith("50 texts to label first: runs:/")


def test_the_reference_is_computed_once_from_the_versions_config_and_kept_on_its_run(capsys, tmp_path,
                                                                                     pipeline_result, monkeypatch):
    client = MlflowClient()
    scratch = tmp_path / "scratch"   # the command's temporary folders: the downloaded config must not stay there
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    version = client.get_model_version("tiny-ner", "1")
    texts = write_texts(tmp_path / "texts.jsonl", ["John Smith visited Berlin .", "Globex hired Anna Schmidt .",
                                                   "Nobody said anything ."] * 3)
    before = len(monitoring_runs(client))
    args = ("models:/tiny-ner/1", "monitor.min_texts=5", "--input", str(texts), "--json")
    code, first, err = run_drift(capsys, *args)
    assert code == 0 and "no reference profile yet" in err
    assert not [p for p in scratch.rglob("resolved.yaml")]
    kept = {Path(f.path).name for f in client.list_artifacts(version.run_id, REFERENCE_DIR)}
    assert {"reference.npz", "reference.json", "training.npz", "training.json"} <= kept
    code, second, err = run_drift(capsys, *args)
    assert code == 0 and "no reference profile yet" not in err
    assert second["checks"] == first["checks"]          # the same reference, downloaded: the same statistics
    runs = monitoring_runs(client)
    assert len(runs) == before + 2
    run = client.get_run(second["mlflow_run_id"])
    assert run.data.tags["nerflow.model_name"] == "tiny-ner" and run.data.tags["nerflow.model_version"] == "1"
    assert run.data.tags["nerflow.model_run"] == version.run_id
    assert run.data.metrics["drift/detected"] == float(second["drift"])
    report = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "drift")}
    assert report == {"report.json", "report.html"}


def test_textcat_no_drift_on_reviews_drawn_like_the_reference_drift_on_shifted_ones(capsys, tmp_path, textcat_run):
    corpus = write_reviews(tmp_path / "reviews", per_label=100, seed=3)
    cfg = tmp_path / "textcat.yaml"
    cfg.write_text(f"task: text-classification\ndata:\n  format: folders\n  dir: {corpus}\n  train: .\n  split:\n"
                   "    validation: 0.4\n    test: 0.1\n")
    rng = random.Random(5)
    same = [review(rng, rng.choice(["pos", "neg"]), rng.randint(6, 40)) for _ in range(120)]
    common = ("models:/tiny-textcat/1", "monitor.alpha=0.01", "--config", str(cfg), "--json", "--fail-on-drift")
    code, calm, _ = run_drift(capsys, *common, "--input", str(write_texts(tmp_path / "calm.jsonl", same)))
    assert code == 0 and calm["drift"] is False, calm
    assert {c["name"] for c in calm["checks"]} >= {"embedding", "prediction:labels", "prediction:confidence"}
    shifted = write_texts(tmp_path / "shifted.jsonl", [noisy(t, rng) for t in same])
    code, report, _ = run_drift(capsys, *common, "--input", str(shifted))
    assert code == EXIT_DRIFT and report["drift"] is True
    assert "embedding" in {c["name"] for c in report["checks"] if c["drift"]}


@pytest.mark.parametrize("case", ["empty", "other-format", "too-few", "folder-without-config", "unknown-model",
                                  "report-is-a-file"])
def test_bad_input_is_one_error_exit_2_and_nothing_logged(case, capsys, tmp_path, pipeline_result):
    client = MlflowClient()
    before = len(monitoring_runs(client))
    uri, extra = "models:/tiny-ner/1", []
    if case == "empty":
        source = tmp_path / "empty.txt"
        source.write_text("\n\n")
        expect = "no text to check"
    elif case == "other-format":   # NER training lines, not texts to read
        source = tmp_path / "train.jsonl"
        source.write_text(json.dumps({"tokens": ["John", "Smith"], "tags": ["B-PER", "I-PER"]}) + "\n")
        expect = f"{source}:1: no \"text\" field"
    else:
        source = write_texts(tmp_path / "few.jsonl", ["John Smith visited Berlin ."] * 3)
        expect = {"too-few": "monitor.min_texts", "folder-without-config": "--config FILE",
                  "unknown-model": "no-such-model", "report-is-a-file": "a file, not a folder"}[case]
        if case == "folder-without-config":
            uri = str(Path(pipeline_result[1]["train"].model_dir))
        if case == "unknown-model":
            uri = "models:/no-such-model/1"
        if case == "report-is-a-file":
            (tmp_path / "report.txt").write_text("kept\n")
            extra = ["--report", str(tmp_path / "report.txt")]
    code, out, err = run_drift(capsys, uri, "--input", str(source), "--json", *extra)
    assert code == EXIT_BAD_INPUT and out == ""
    assert expect in err and err.count("error:") == 1, err
    assert len(monitoring_runs(client)) == before
    if case == "report-is-a-file":
        assert (tmp_path / "report.txt").read_text() == "kept\n"


def test_the_reference_stage_logs_the_reference_at_registration_and_drift_uses_it(capsys, tmp_path,
                                                                                  pipeline_result, tiny_corpus,
                                                                                  corpus_model_dir):
    """`monitor.reference: true` (the shipped configs): the reference is a stage of the run, before registration,
    logged on the version's run; the version's first `nerflow drift` downloads it instead of computing one."""

    from nerflow.flows.pipeline import pipeline

    from .corpus import tiny_config

    template, _ = pipeline_result
    cache = tmp_path / "cache"
    copy_cache(template.cache_dir, cache)
    cfg = tiny_config(tmp_path, tiny_corpus, corpus_model_dir, cache, "monitor.reference=true",
                      "registry.model_name=tiny-ner-referenced")
    result = pipeline(cfg)
    assert result.stages == {"validate": True, "tokenize": True, "train": True, "evaluate": True,
                             "reference": False, "register": False, "promote": False}
    assert result["reference"].texts + result["reference"].holdout == 8      # the tiny validation split
    client = MlflowClient()
    version = client.get_model_version("tiny-ner-referenced", str(result["register"].version))
    assert version.run_id == result.run_id
    kept = {Path(f.path).name for f in client.list_artifacts(result.run_id, REFERENCE_DIR)}
    assert {"reference.npz", "reference.json", "training.npz", "training.json"} <= kept
    # the training split's input descriptors, every training sentence (fewer than monitor.max_training_texts)
    train_lines = (Path(result["validate"].path) / "train.jsonl").read_text().splitlines()
    assert result["reference"].training == len(train_lines) > 0
    texts = write_texts(tmp_path / "texts.jsonl", ["John Smith visited Berlin ."] * 6)
    code, report, err = run_drift(capsys, f"models:/tiny-ner-referenced/{version.version}", "monitor.min_texts=5",
                                  "--input", str(texts), "--json")
    assert code == 0 and "no reference profile yet" not in err
    assert report["reference_texts"] == result["reference"].texts
