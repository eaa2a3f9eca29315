"""`nerflow drift` on the session's registered versions (tiny-ner, tiny-textcat) against a real MLflow store: no drift
on texts drawn like the reference, drift on a shifted batch (`--fail-on-drift` exits 5), the reference computed once
from the version's own config and kept on its run, the monitoring run and its report, and bad input (exit 2, nothing
logged)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nerflow.flows import cli
from nerflow.flows.errors import EXIT_BAD_INPUT, EXIT_DRIFT
from nerflow.prefect_tasks.monitoring import EXPERIMENT, REFERENCE_DIR

from .corpus import write_conll
from .textcat_corpus import review, write_reviews

PEOPLE = [["Maria", "Lopez"], ["John", "Smith"], ["Anna", "Schmidt"], ["Pedro", "Alvarez"]]
ORGS = [["Acme", "Corp"], ["Globex"], ["Initech"], ["Northwind", "Trading"]]
PLACES = [["Berlin"], ["Paris"], ["Springfield"], ["New", "Salem"], ["Madrid"]]
TEMPLATES = [["PER", "visited", "LOC", "."], ["ORG", "hired", "PER", "."], ["PER", "works", "for", "ORG", "in", "LOC",
             "."], ["Nobody", "said", "anything", "."], ["The", "Vortex", "3000", "was", "launched", "by", "ORG", "in",
                                                         "LOC", "."]]


def sentence(rng: random.Random) -> list[tuple[str, str]]:
    """One sentence in the tiny corpus's words, tagged: the distribution every batch below draws from."""
    out = []
    for slot in rng.choice(TEMPLATES):
        pool = {"PER": PEOPLE, "ORG": ORGS, "LOC": PLACES}.get(slot)
        if pool is None:
            out.append((slot, "O"))
            continue
        words = rng.choice(pool)
        out += [(w, ("B-" if i == 0 else "I-") + slot) for i, w in enumerate(words)]
    return out


def noisy(text: str, rng: random.Random, share: float = 0.3) -> str:
    """Characters replaced by digits and symbols: the shifted batch (what OCR or a broken feed does to news)."""
    return "".join(rng.choice("0123456789#@%&") if c.isalpha() and rng.random() < share else c for c in text)


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
    (root / "valid.txt").write_text("".join("-DOCSTART- O\n\n" + "".join(
        "".join(f"{w} {t}\n" for w, t in s) + "\n" for s in doc) for doc in docs))
    write_conll(root / "train.txt", [s for doc in docs[:4] for s in doc])
    write_conll(root / "test.txt", [s for doc in docs[4:8] for s in doc])
    cfg = root / "drift.yaml"
    cfg.write_text(f"experiment: nerflow-test\ndata:\n  dir: {root}\n  train: train.txt\n  validation: valid.txt\n"
                   "  test: test.txt\n")
    return cfg


def write_texts(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "id": k}) + "\n" for k, t in enumerate(texts)))
    return path


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

    code, text, _ = run_drift(capsys, *common[:-2], "--input", str(shifted))   # no --json, no --fail-on-drift
    assert code == 0 and text.splitlines()[-1].startswith("drift: ") and "embedding" in text.splitlines()[-1]


def test_the_reference_is_computed_once_from_the_versions_config_and_kept_on_its_run(capsys, tmp_path,
                                                                                     pipeline_result):
    client = MlflowClient()
    version = client.get_model_version("tiny-ner", "1")
    texts = write_texts(tmp_path / "texts.jsonl", ["John Smith visited Berlin .", "Globex hired Anna Schmidt .",
                                                   "Nobody said anything ."] * 3)
    before = len(monitoring_runs(client))
    args = ("models:/tiny-ner/1", "monitor.min_texts=5", "--input", str(texts), "--json")
    code, first, err = run_drift(capsys, *args)
    assert code == 0 and "no reference profile yet" in err
    kept = {Path(f.path).name for f in client.list_artifacts(version.run_id, REFERENCE_DIR)}
    assert {"reference.npz", "reference.json"} <= kept
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


@pytest.mark.parametrize("case", ["empty", "other-format", "too-few", "folder-without-config", "unknown-model"])
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
                  "unknown-model": "no-such-model"}[case]
        if case == "folder-without-config":
            uri = str(Path(pipeline_result[1]["train"].model_dir))
        if case == "unknown-model":
            uri = "models:/no-such-model/1"
    code, out, err = run_drift(capsys, uri, "--input", str(source), "--json", *extra)
    assert code == EXIT_BAD_INPUT and out == ""
    assert expect in err and err.count("error:") == 1, err
    assert len(monitoring_runs(client)) == before


def test_the_reference_stage_logs_the_reference_at_registration_and_drift_uses_it(capsys, tmp_path,
                                                                                  pipeline_result, tiny_corpus,
                                                                                  corpus_model_dir):
    """`monitor.reference: true` (the shipped configs): the reference is a stage of the run, before registration,
    logged on the version's run; the version's first `nerflow drift` downloads it instead of computing one."""
    import shutil

    from nerflow.flows.pipeline import pipeline

    from .corpus import tiny_config

    template, _ = pipeline_result
    cache = tmp_path / "cache"
    shutil.copytree(template.cache_dir, cache, symlinks=True, ignore=shutil.ignore_patterns("locks"))
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
    assert {"reference.npz", "reference.json"} <= kept
    texts = write_texts(tmp_path / "texts.jsonl", ["John Smith visited Berlin ."] * 6)
    code, report, err = run_drift(capsys, f"models:/tiny-ner-referenced/{version.version}", "monitor.min_texts=5",
                                  "--input", str(texts), "--json")
    assert code == 0 and "no reference profile yet" not in err
    assert report["reference_texts"] == result["reference"].texts
