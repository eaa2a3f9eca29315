"""Text-classification data validation: each rule fails with the document's source line; class balance and
train/test leakage are exact metrics and warnings. GX runs cost seconds, so each corpus is validated once."""
from __future__ import annotations

import pytest

from nerflow.textcat.config import TextcatDataConfig as DataConfig
from nerflow.textcat.data import Document
from nerflow.textcat.validate import RULES, validate_corpus
from nerflow.validation import Failure, ValidationReport


def D(text: str, labels: list[str], source: str) -> Document:
    return Document(text, labels, source)


def by_rule(report: ValidationReport, rule: str) -> list[Failure]:
    return [f for f in report.failures if f.rule == rule]


@pytest.fixture(scope="module")
def clean() -> ValidationReport:
    corpus = {"train": [D("great film", ["pos"], "train.csv:2"), D("awful film", ["neg"], "train.csv:3"),
                        D("fine acting", ["pos"], "train.csv:4"), D("boring plot", ["neg"], "train.csv:5")],
              "validation": [D("loved it", ["pos"], "dev.csv:2"), D("hated it", ["neg"], "dev.csv:3")],
              "test": [D("superb", ["pos"], "test.csv:2"), D("dreadful", ["neg"], "test.csv:3")]}
    return validate_corpus(corpus, DataConfig(format="csv", min_class_examples=2))


@pytest.fixture(scope="module")
def broken() -> ValidationReport:
    """One defect per rule at a known line, a small class, a duplicate in train, and texts leaked from train."""
    corpus = {"train": [D("great film", ["pos"], "train.csv:2"),
                        D("   \n", ["pos"], "train.csv:3"),                 # blank text
                        D("no label", [], "train.csv:4"),                   # empty label cell
                        D("two labels", ["pos", "neg"], "train.csv:5"),      # single-label data
                        D("great film", ["pos"], "train.csv:6"),            # duplicate of line 2
                        D("awful", ["neg"], "train.csv:7"),
                        D("so so", ["so-so/ok"], "train.csv:8")],
              "validation": [D("great film", ["pos"], "dev.csv:2"), D("awful", ["neg"], "dev.csv:3"),
                             D("new", ["neg"], "dev.csv:4"), D("other", ["pos"], "dev.csv:5")],
              "test": [D("meh", ["mixed"], "test.csv:2"),                   # label never seen in train
                       D("great film", ["pos"], "test.csv:3"), D("fresh", ["pos"], "test.csv:4")]}
    return validate_corpus(corpus, DataConfig(format="csv", min_class_examples=3))


def test_clean_corpus_passes(clean):
    assert clean.passed and clean.failures == [] and clean.warnings == []
    assert clean.rules == RULES and clean.unit == "documents"
    assert clean.metrics == {
        "n_documents_train": 4.0, "n_documents_validation": 2.0, "n_documents_test": 2.0, "n_labels": 2.0,
        "class_count_train_neg": 2.0, "class_count_train_pos": 2.0, "min_class_share_train": 0.5,
        "validation_in_train_share": 0.0, "test_in_train_share": 0.0, "duplicates_train": 0.0,
        "failures_text_not_empty": 0.0, "failures_label_present": 0.0, "failures_label_in_set": 0.0}
    assert clean.gx_results and all(r["success"] for r in clean.gx_results)
    assert clean.summary().startswith("data validation passed: {'train': 4, 'validation': 2, 'test': 2} documents")


def test_each_rule_fails_at_the_documents_line(broken):
    assert not broken.passed
    assert [f.source for f in by_rule(broken, "text_not_empty")] == ["train.csv:3"]
    present = by_rule(broken, "label_present")
    assert [f.source for f in present] == ["train.csv:4", "train.csv:5"]
    assert "no label" in present[0].message and "data.multi_label=true" in present[1].message
    (unknown,) = by_rule(broken, "label_in_set")
    assert unknown.source == "test.csv:2"
    assert "'mixed' occurs in test but never in train" in unknown.message and "data.labels" in unknown.message
    assert {rule: broken.metrics[f"failures_{rule}"] for rule in RULES} == {
        "text_not_empty": 1.0, "label_present": 2.0, "label_in_set": 1.0}
    assert "test.csv:2: [label_in_set]" in broken.summary()


def test_class_counts_small_classes_and_duplicates(broken):
    m = broken.metrics
    assert (m["n_labels"], m["class_count_train_pos"], m["class_count_train_neg"]) == (3.0, 4.0, 2.0)
    assert m["class_count_train_so-so_ok"] == 1.0          # '/' is not allowed in an MLflow metric name
    assert m["min_class_share_train"] == pytest.approx(1 / 7)
    assert m["duplicates_train"] == 1.0
    small = [w for w in broken.warnings if w.startswith("class ")]
    assert len(small) == 2
    assert "'neg' has 2 train example(s)" in small[0] and "data.min_class_examples=3" in small[0]
    assert "'so-so/ok' has 1 train example(s)" in small[1]


def test_leakage_share_is_exact_and_warns(broken):
    assert broken.metrics["validation_in_train_share"] == 0.5      # 2 of 4 validation texts occur in train
    assert broken.metrics["test_in_train_share"] == pytest.approx(1 / 3)
    leaks = [w for w in broken.warnings if "verbatim in train" in w]
    assert leaks[0].startswith("validation: 2 document(s) (50.0%)") and "first: dev.csv:2" in leaks[0]
    assert leaks[1].startswith("test: 1 document(s) (33.3%)") and "first: test.csv:3" in leaks[1]


def test_multi_label_with_a_declared_label_set():
    corpus = {"train": [D("a", ["art", "war"], "m.jsonl:1"), D("b", [], "m.jsonl:2"), D("c", ["sport"], "m.jsonl:3")],
              "validation": [D("d", ["war"], "m.jsonl:4")], "test": []}
    report = validate_corpus(corpus, DataConfig(format="jsonl", multi_label=True, labels=["war", "art"]))
    # no label is legitimate in multi-label data; train's labels are checked against data.labels too
    assert [(f.rule, f.source) for f in report.failures] == [("label_in_set", "m.jsonl:3")]
    assert "'sport' is not in data.labels (war, art)" in report.failures[0].message
    assert report.metrics["n_labels"] == 2.0 and report.metrics["class_count_train_war"] == 1.0
    assert "test: no documents" in report.warnings
