"""Text classification's side of the served-scorer protocol (nerflow.scoring), the `promote` entry of the task
type: the examples of a canonical split, their gold labels, how a version registered before the protocol is asked
(its `predict` on the texts) and understood (`label` or `labels` per answer), and what the gate and `nerflow compare`
count (`gate_tables`, `hits`, `gold_count`)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from nerflow.scoring import LegacyRequest
from nerflow.textcat.data import read_split
from nerflow.textcat.evaluation import gate_tables  # noqa: F401 - the gate's score tables: this entry's, with the rest


def examples(split: Path) -> list[dict]:
    """The canonical split's documents as dicts (`text`, `labels`, `source`), as the protocol takes them."""
    return [asdict(d) for d in read_split(split)]


def gold(examples: list[dict]) -> list[list[str]]:
    return [list(e["labels"]) for e in examples]


def legacy_request(examples: list[dict]) -> LegacyRequest:
    # an old TextClassifierModel keeps its labels and settings on its Classifier (nerflow.textcat.predict)
    return LegacyRequest(inputs=[e["text"] for e in examples], labels_at="classifier.labels",
                         multi_label_at="classifier.meta.multi_label")


def labels_of(answer: dict) -> list[str]:
    """One served answer's predicted labels: `labels` (multi-label) or `[label]` (single-label)."""
    return list(answer["labels"]) if "labels" in answer else [answer["label"]]


def from_legacy(examples: list[dict], answers: list[dict]) -> list[list[str]]:
    if len(answers) != len(examples):
        raise ValueError(f"{len(answers)} answers for {len(examples)} texts")
    return [labels_of(a) for a in answers]


def hits(gold_labels: list[list[str]], served: dict) -> set:
    """The gold labels a version's served predictions got right (`nerflow compare`)."""
    return {(i, label) for i, (g, p) in enumerate(zip(gold_labels, served["pred"])) for label in set(g) & set(p)}


def gold_count(gold_labels: list[list[str]]) -> int:
    return sum(len(g) for g in gold_labels)
