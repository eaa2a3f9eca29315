"""Data validation for text classification: check a raw corpus before anything is trained on it, and say where to
fix each problem.

The per-document rules run as Great Expectations suites on small scalar frames (one row per document, one row per
(document, label): GX's set expectations break on list columns). Class balance, duplicates and train/test leakage
are metrics and warnings, not failures. Nothing here needs a tokenizer: lengths in sub-word tokens are reported by
the tokenize stage.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nerflow.data import SPLITS
from nerflow.redact import excerpt
from nerflow.textcat.config import TextcatDataConfig as DataConfig
from nerflow.textcat.data import Corpus, Document, label_list, load_corpus, write_split  # noqa: F401 - load_corpus: this entry's reader
from nerflow.validation import ValidationReport, capped, gx_failures, gx_modules, rule, run_gx

RULES = ("text_not_empty", "label_present", "label_in_set")
INDEX_COLUMNS = ["source", "n_chars", "n_labels", "label"]


def metric_name(label: str) -> str:
    """A label as part of an MLflow metric name, which allows only [A-Za-z0-9_.-] here."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)


def _frames(docs: list[Document], check_labels: bool) -> dict[str, Any]:
    import pandas as pd

    frames = {"documents": pd.DataFrame({"source": [d.source for d in docs],
                                         "n_chars": [len(d.text.strip()) for d in docs],
                                         "n_labels": [len(d.labels) for d in docs]})}
    if check_labels:
        frames["labels"] = pd.DataFrame({"source": [d.source for d in docs for _ in d.labels],
                                         "label": [label for d in docs for label in d.labels]}, dtype=object)
    return frames


def _suites(allowed: list[str], cfg: DataConfig) -> dict[str, list]:
    _, gxe = gx_modules()
    documents = [gxe.ExpectColumnValuesToBeBetween(column="n_chars", min_value=1, **rule("text_not_empty"))]
    if not cfg.multi_label:   # multi-label: a document with no label is legitimate
        documents.append(gxe.ExpectColumnValuesToBeBetween(column="n_labels", min_value=1, max_value=1,
                                                           **rule("label_present")))
    return {"documents": documents,
            "labels": [gxe.ExpectColumnValuesToBeInSet(column="label", value_set=allowed, **rule("label_in_set"))]}


def _listing(labels: list[str], first: int = 10) -> str:
    more = f", ... ({len(labels) - first} more)" if len(labels) > first else ""
    return ", ".join(labels[:first]) + more if labels else "none"


def _message(name: str, row: dict, split: str, allowed: list[str], cfg: DataConfig) -> str:
    if name == "text_not_empty":
        return "the text is empty or only whitespace; give the document its text or remove it"
    if name == "label_present" and not row["n_labels"]:
        return (f"the document has no label ({cfg.label_column!r} is empty or missing); give it exactly one label "
                "or remove it")
    if name == "label_present":
        return (f"the document has {row['n_labels']} labels but data.multi_label is false; give it one label or "
                "set data.multi_label=true")
    if cfg.labels:
        return (f"label {excerpt(row['label'])} is not in data.labels ({_listing(allowed)}); fix the label or add it "
                "to data.labels")
    return (f"label {excerpt(row['label'])} occurs in {split} but never in train, so the model cannot learn it; fix "
            f"the label, add train examples, or list every label in data.labels (train has: {_listing(allowed)})")


def _in_train_share(docs: list[Document], train_texts: set[str]) -> tuple[float, list[Document]]:
    leaked = [d for d in docs if d.text in train_texts]
    return (len(leaked) / len(docs) if docs else 0.0), leaked


def _duplicates(docs: list[Document]) -> int:
    seen: set[str] = set()
    count = 0
    for d in docs:
        count += d.text in seen
        seen.add(d.text)
    return count


def validate_corpus(corpus: Corpus, cfg: DataConfig) -> ValidationReport:
    """Run every rule on all splits; the report passes when nothing failed (warnings do not fail it)."""
    splits = [s for s in SPLITS if s in corpus] + [s for s in corpus if s not in SPLITS]
    train = corpus.get("train", [])
    allowed = label_list(corpus, cfg)
    # data.labels given: train's labels are checked against it too; else train defines the set.
    frames = {split: _frames(corpus[split], bool(cfg.labels) or split != "train") for split in splits}
    gx_results = run_gx(_suites(allowed, cfg), frames, INDEX_COLUMNS)
    failures, counts = gx_failures(gx_results, lambda name, row, split: _message(name, row, split, allowed, cfg))

    metrics: dict[str, float] = {f"n_documents_{split}": float(len(corpus[split])) for split in splits}
    warnings = [f"{split}: no documents" for split in splits if not corpus[split]]
    metrics["n_labels"] = float(len(allowed))
    class_counts = {label: sum(label in d.labels for d in train) for label in allowed}
    for label, n in class_counts.items():
        metrics[f"class_count_train_{metric_name(label)}"] = float(n)
        if n < cfg.min_class_examples:
            warnings.append(f"class {label!r} has {n} train example(s), fewer than data.min_class_examples="
                            f"{cfg.min_class_examples}; the model may not learn it: add examples or merge the class")
    metrics["min_class_share_train"] = min(class_counts.values()) / len(train) if train and class_counts else 0.0

    train_texts = {d.text for d in train}
    for split in ("validation", "test"):
        share, leaked = _in_train_share(corpus.get(split, []), train_texts)
        metrics[f"{split}_in_train_share"] = share
        if leaked:
            warnings.append(f"{split}: {len(leaked)} document(s) ({share:.1%}) also occur verbatim in train (first: "
                            f"{leaked[0].source}); {split} scores will be optimistic: remove them from one side")
    metrics["duplicates_train"] = float(_duplicates(train))

    kept = capped(failures, counts, RULES, metrics)
    return ValidationReport(passed=not kept and not any(counts.values()), failures=kept, warnings=warnings,
                            metrics=metrics, gx_results=gx_results, rules=RULES, unit="documents")


def write_validated(corpus: Corpus, cfg: DataConfig, out: Path) -> None:
    """`<split>.jsonl`, `labels.json` and `task.json` (single or multi-label) for the stages after validation."""
    for split, docs in corpus.items():
        write_split(docs, out / f"{split}.jsonl")
    (out / "labels.json").write_text(json.dumps(label_list(corpus, cfg)))
    (out / "task.json").write_text(json.dumps({"multi_label": cfg.multi_label}))


def sample_train(corpus: Corpus, cfg: DataConfig) -> Corpus:
    """The training split cut to `data.train_fraction` of its texts, stratified by label (by label set for
    multi-label data), drawn with `data.sample_seed` (nerflow.subsets). A label the sample loses is an error
    giving the counts."""
    from collections import Counter

    from nerflow import subsets

    if cfg.train_fraction >= 1.0:
        return corpus
    train = corpus["train"]
    sample = subsets.stratified(train, lambda d: tuple(sorted(d.labels)), cfg.train_fraction, cfg.sample_seed)

    def counts(docs: list[Document]) -> Counter:
        return Counter(label for d in docs for label in d.labels)

    error = subsets.too_few(cfg.train_fraction, cfg.sample_seed, "texts", len(sample), len(train), counts(train),
                            counts(sample), "texts")
    if error is not None:
        raise error
    return {**corpus, "train": sample}
