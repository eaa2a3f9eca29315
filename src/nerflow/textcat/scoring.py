"""Text classification's side of the served-scorer protocol (nerflow.scoring), the `promote` entry of the task
type: the examples of a canonical split, their gold labels, the scorer built from a verified model folder
(`load_scorer`), and what the gate and `nerflow compare` count (`gate_tables`, `hits`, `gold_count`).

Models with different label sets are compared on the classes both know, as NER compares entity types
(nerflow.ner.evaluate.score_restricted): the other classes are removed from gold and predictions, so neither model
is blamed for (or credited with) classes the other cannot predict (`shared_table`)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from nerflow.textcat import evaluate
from nerflow.textcat.data import read_split


def examples(split: Path) -> list[dict]:
    """The canonical split's documents as dicts (`text`, `labels`, `source`), as the protocol takes them."""
    return [asdict(d) for d in read_split(split)]


def gold(examples: list[dict]) -> list[list[str]]:
    return [list(e["labels"]) for e in examples]


def load_scorer(folder: Path):
    """The classifier of a model folder nerflow trained (nerflow.textcat.predict): it speaks the protocol."""
    from nerflow.textcat.predict import Classifier

    return Classifier.load(folder)


def hits(gold_labels: list[list[str]], served: dict) -> set:
    """The gold labels a version's served predictions got right (`nerflow compare`)."""
    return {(i, label) for i, (g, p) in enumerate(zip(gold_labels, served["pred"])) for label in set(g) & set(p)}


def gold_count(gold_labels: list[list[str]]) -> int:
    return sum(len(g) for g in gold_labels)


def served_table(gold: list[list[str]], served: dict) -> tuple[dict, list[str]]:
    """Macro F1 and per-class scores of one version's served labels. Classes of the gold data the model does not
    know count as classes it never predicts."""
    labels = list(served["labels"]) + sorted({label for g in gold for label in g} - set(served["labels"]))
    index = {label: j for j, label in enumerate(labels)}
    decided = np.zeros((len(gold), len(labels)))
    for i, predicted in enumerate(served["pred"]):
        decided[i, [index[label] for label in predicted]] = 1.0
    multi = bool(served.get("multi_label"))
    scores = evaluate.score(gold, decided, labels, multi)
    return {"f1": scores.macro_f1, "per_type": scores.per_class, "metric": "macro F1"}, labels


def shared_table(gold: list[list[str]], served: dict, shared: list[str]) -> dict:
    """Per-class scores and macro F1 over the classes in `shared` only: every other class is removed from gold and
    from the predictions.

    A single-label document whose gold class is removed is left out: a single-label model must pick one of its own
    classes, so the model that lacks that class cannot be right on it, and its every pick there would count as a
    false positive of a shared class (where NER's masking leaves "O", which either model may predict). A
    multi-label document stays, with the shared part of its labels: a shared label predicted on it is a mistake
    either model could have avoided. Counted as `evaluate.score` counts (zero division gives 0; the macro average
    runs over every class in `shared`)."""
    keep, multi = set(shared), bool(served.get("multi_label"))
    docs = [(set(g) & keep, set(p) & keep) for g, p in zip(gold, served["pred"], strict=True)
            if multi or set(g) <= keep]
    per_type = {}
    for c in shared:
        tp = sum(c in g and c in p for g, p in docs)
        fp = sum(c not in g and c in p for g, p in docs)
        fn = sum(c in g and c not in p for g, p in docs)
        per_type[c] = {"precision": tp / (tp + fp) if tp else 0.0, "recall": tp / (tp + fn) if tp else 0.0,
                       "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0, "support": sum(c in g for g, _ in docs)}
    f1 = float(np.mean([row["f1"] for row in per_type.values()])) if shared else 0.0
    return {"f1": f1, "per_type": per_type, "types": list(shared)}   # types: `decide` names them even when empty


def gate_tables(gold: list[list[str]], scored: dict, versions: tuple[str, str | None]
                ) -> tuple[dict, dict | None, tuple | None]:
    """Full score tables of (challenger, champion) from their served labels, and tables over the classes both know
    when their label sets differ (nerflow.promotion.decide)."""
    challenger, champion = versions
    full = {v: served_table(gold, scored[v])[0] for v in versions if v is not None}
    restricted = None
    if champion is not None and set(scored[challenger]["labels"]) != set(scored[champion]["labels"]):
        shared = sorted(set(scored[challenger]["labels"]) & set(scored[champion]["labels"]))
        restricted = tuple(shared_table(gold, scored[v], shared) for v in versions)
    return full[challenger], full.get(champion) if champion else None, restricted
