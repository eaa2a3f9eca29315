"""Text-classification evaluation from predicted probabilities: scores, thresholds, calibration pairs, confusion,
errors (the calibration error and the reliability diagram themselves: nerflow.reliability).

Everything starts from the probability matrix [documents, labels] (softmax rows for single-label, independent
sigmoids for multi-label) rather than from decided labels, so multi-label thresholds can be tuned on validation and
calibration is measured on the same numbers the served model returns. Plain functions; the flow/task layer decides
where results go (MLflow, artifacts).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerflow import plots
from nerflow.data import plain as _plain
from nerflow.reliability import expected_calibration_error

DEFAULT_THRESHOLD = 0.5
NONE_LABEL = "(none)"  # confusion row/column of a multi-label document with no gold / no predicted label
_PROB_SLACK = 1e-6  # float32 softmax rows can overshoot 1 by an ulp or two; more than this means logits, not probs
_TEXT_CHARS = 500
_FIELDS = ("precision", "recall", "f1", "support")


def _gold_matrix(gold: list[list[str]], labels: list[str], multi_label: bool, what: str = "gold") -> np.ndarray:
    """Indicator matrix [documents, labels]; an unknown label would otherwise drop silently out of every score."""
    index = {label: j for j, label in enumerate(labels)}
    out = np.zeros((len(gold), len(labels)), dtype=bool)
    for i, doc_labels in enumerate(gold):
        if not multi_label and len(doc_labels) != 1:
            raise ValueError(f"document {i}: single-label {what} needs exactly one label, found {doc_labels!r}")
        for label in doc_labels:
            if label not in index:
                raise ValueError(f"document {i}: {what} label {label!r} is not in the label set {labels!r}")
            out[i, index[label]] = True
    return out


def _check_probs(probs: np.ndarray, labels: list[str], documents: int | None = None) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must have shape [documents, {len(labels)}], found {probs.shape}")
    if documents is not None and probs.shape[0] != documents:
        raise ValueError(f"gold has {documents} documents but probs has {probs.shape[0]} rows")
    if probs.size and not (np.isfinite(probs).all() and probs.min() >= -_PROB_SLACK
                           and probs.max() <= 1 + _PROB_SLACK):
        raise ValueError("probs must be probabilities in [0, 1] (softmax or sigmoid outputs, not logits)")
    return np.clip(probs, 0.0, 1.0)


def _check_thresholds(thresholds: np.ndarray | None, labels: list[str], multi_label: bool) -> np.ndarray:
    if thresholds is None:
        return np.full(len(labels), DEFAULT_THRESHOLD)
    if not multi_label:
        raise ValueError("thresholds apply to multi-label only; single-label predicts the argmax")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (len(labels),):
        raise ValueError(f"thresholds must have one value per label ({len(labels)}), found shape {thresholds.shape}")
    return thresholds


def _predicted_matrix(probs: np.ndarray, multi_label: bool, thresholds: np.ndarray) -> np.ndarray:
    if multi_label:
        return probs >= thresholds
    out = np.zeros(probs.shape, dtype=bool)
    out[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return out


def predicted_labels(probs: np.ndarray, labels: list[str], multi_label: bool,
                     thresholds: np.ndarray | None = None) -> list[list[str]]:
    """Single-label: the argmax (first on ties), one label each. Multi-label: every label with p >= its threshold
    (default 0.5), possibly none."""
    probs = _check_probs(probs, labels)
    pred = _predicted_matrix(probs, multi_label, _check_thresholds(thresholds, labels, multi_label))
    return [[labels[j] for j in np.flatnonzero(row)] for row in pred]


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def choose_thresholds(gold: list[list[str]], probs: np.ndarray, labels: list[str]) -> np.ndarray:
    """Multi-label: per label, the threshold maximising that label's F1 on these (validation) documents.

    Candidates are 0.5 and the midpoints between consecutive distinct probabilities of the label, which covers every
    distinct split of the documents while staying away from the observed values. Ties go to the candidate closest to
    0.5 (then the lower one), so a flat F1 does not drag the threshold to an extreme; a label with no gold positive
    keeps 0.5, because there is nothing to tune it on.
    """
    truth = _gold_matrix(gold, labels, multi_label=True)
    probs = _check_probs(probs, labels, len(gold))
    out = np.full(len(labels), DEFAULT_THRESHOLD)
    for j in range(len(labels)):
        positive = truth[:, j]
        if not positive.any():
            continue
        values = np.unique(probs[:, j])
        candidates = [DEFAULT_THRESHOLD, *((values[:-1] + values[1:]) / 2)]
        best = (-1.0, 0.0, 0.0)  # (f1, -distance to 0.5, -threshold): the max wins
        for t in candidates:
            pred = probs[:, j] >= t
            f1 = _f1(int((pred & positive).sum()), int((pred & ~positive).sum()), int((~pred & positive).sum()))
            best = max(best, (f1, -abs(t - DEFAULT_THRESHOLD), -t))
        out[j] = -best[2]
    return out


@dataclass(frozen=True)
class ClassScores:
    accuracy: float  # single-label: share correct; multi-label: exact match of the whole label set
    macro_precision: float
    macro_recall: float
    macro_f1: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    per_class: dict[str, dict[str, float]]  # {"label": {"precision", "recall", "f1", "support"}}
    ece: float
    report_text: str  # per-class table, averages and accuracy, 4 digits
    report: dict  # the same, JSON-ready (plain floats/ints)

    def metrics(self, prefix: str, per_class_fields: tuple[str, ...] = _FIELDS) -> dict[str, float]:
        """Flat MLflow-ready metrics: `{prefix}f1` is MACRO F1 (the headline and what the promotion gate compares;
        classes are few and often imbalanced, so each counts alike), plus `accuracy`, `f1_macro`, `f1_micro`,
        `precision`/`recall` (macro), `ece`, and `{field}_{label}` for each of `per_class_fields`.
        The prefix carries its own separator, e.g. `test/` -> `test/f1`, `test/f1_sports`."""
        out = {f"{prefix}f1": self.macro_f1, f"{prefix}accuracy": self.accuracy,
               f"{prefix}f1_macro": self.macro_f1, f"{prefix}f1_micro": self.micro_f1,
               f"{prefix}precision": self.macro_precision, f"{prefix}recall": self.macro_recall,
               f"{prefix}ece": self.ece}
        for label, row in self.per_class.items():
            # MLflow rejects metric names with characters outside this set; labels come from user data (as in NER).
            name = re.sub(r"[^A-Za-z0-9_./ -]", "_", label)
            for field in per_class_fields:
                out[f"{prefix}{field}_{name}"] = float(row[field])
        return out


def _report_text(per_class: dict[str, dict[str, float]], averages: dict[str, dict[str, float]], accuracy: float,
                 documents: int, multi_label: bool) -> str:
    accuracy_name = "exact-match accuracy" if multi_label else "accuracy"
    width = max([len(accuracy_name), *(len(name) for name in [*per_class, *averages])])
    header = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"

    def row(name: str, r: dict[str, float]) -> str:
        return (f"{name:>{width}} {r['precision']:>9.4f} {r['recall']:>9.4f} {r['f1']:>9.4f}"
                f" {int(r['support']):>9d}")

    lines = [header, "", *(row(n, r) for n, r in per_class.items()), "",
             f"{accuracy_name:>{width}} {'':>9} {'':>9} {accuracy:>9.4f} {documents:>9d}",
             *(row(n, r) for n, r in averages.items())]
    return "\n".join(lines) + "\n"


def score(gold: list[list[str]], probs: np.ndarray, labels: list[str], multi_label: bool,
          thresholds: np.ndarray | None = None, bins: int = 15) -> ClassScores:
    """Accuracy, macro/micro and per-class precision/recall/F1, and ECE, with zero_division=0 everywhere.

    Macro averages run over ALL labels of the label set, not just those seen: a label with no gold document and no
    prediction scores 0 (precision, recall and F1) and pulls the macro average down. That keeps macro F1 comparable
    between runs whose splits happen to miss a rare label, and it is the label set the model is served with.
    Single-label micro P = R = F1 = accuracy (every document has one gold and one predicted label).
    """
    truth = _gold_matrix(gold, labels, multi_label)
    probs = _check_probs(probs, labels, len(gold))
    pred = _predicted_matrix(probs, multi_label, _check_thresholds(thresholds, labels, multi_label))
    tp = (truth & pred).sum(axis=0)
    fp = (~truth & pred).sum(axis=0)
    fn = (truth & ~pred).sum(axis=0)

    def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
        return (tp / (tp + fp) if tp else 0.0), (tp / (tp + fn) if tp else 0.0), _f1(tp, fp, fn)

    per_class = {}
    for j, label in enumerate(labels):
        p, r, f = prf(int(tp[j]), int(fp[j]), int(fn[j]))
        per_class[label] = {"precision": p, "recall": r, "f1": f, "support": int(truth[:, j].sum())}
    support = int(truth.sum())
    micro = dict(zip(("precision", "recall", "f1"), prf(int(tp.sum()), int(fp.sum()), int(fn.sum()))))
    macro = {field: float(np.mean([row[field] for row in per_class.values()])) if labels else 0.0
             for field in ("precision", "recall", "f1")}
    averages = {"micro avg": {**micro, "support": support}, "macro avg": {**macro, "support": support}}
    accuracy = float((truth == pred).all(axis=1).mean()) if len(gold) else 0.0
    ece = expected_calibration_error(*calibration(probs, gold, labels, multi_label), bins=bins)
    # The report's keys follow NER's (sklearn/seqeval): "f1-score", "micro avg", "macro avg", "accuracy".
    report = _plain({**{name: {("f1-score" if k == "f1" else k): v for k, v in r.items()}
                        for name, r in {**per_class, **averages}.items()}, "accuracy": accuracy})
    return ClassScores(accuracy=accuracy, macro_precision=macro["precision"], macro_recall=macro["recall"],
                       macro_f1=macro["f1"], micro_precision=micro["precision"], micro_recall=micro["recall"],
                       micro_f1=micro["f1"], per_class=per_class, ece=ece,
                       report_text=_report_text(per_class, averages, accuracy, len(gold), multi_label),
                       report=report)


def calibration(probs: np.ndarray, gold: list[list[str]], labels: list[str],
                multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) pairs for ECE and the reliability diagram. Single-label: the top probability per
    document and whether the argmax is the gold label. Multi-label: every (document, label) probability and whether
    the label is gold, since each sigmoid is its own yes/no forecast."""
    truth = _gold_matrix(gold, labels, multi_label)
    probs = _check_probs(probs, labels, len(gold))
    if multi_label:
        return probs.ravel(), truth.ravel()
    top = probs.argmax(axis=1)
    return probs.max(axis=1), truth[np.arange(len(probs)), top]


def confusion(gold: list[list[str]], pred: list[list[str]], labels: list[str],
              multi_label: bool | None = None) -> tuple[list[str], np.ndarray]:
    """Counts, rows gold and columns predicted. Single-label: labels x labels, one count per document.
    Multi-label: every (gold label, predicted label) pair within a document counts once, so a document with gold
    {a, b} predicted {a, b} adds to a->b and b->a as well as the diagonal; a final "(none)" row/column stands for a
    document with no gold / no predicted label. `multi_label=None` picks multi-label when any document has other
    than exactly one gold or predicted label."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} documents but pred has {len(pred)}")
    if multi_label is None:
        multi_label = any(len(labs) != 1 for labs in [*gold, *pred])
    truth = _gold_matrix(gold, labels, multi_label)
    guess = _gold_matrix(pred, labels, multi_label, what="pred")
    if not multi_label:
        matrix = truth.T.astype(np.int64) @ guess.astype(np.int64)
        return list(labels), matrix
    # An extra indicator column for "no label" turns the pair count into one matrix product.
    truth = np.column_stack([truth, ~truth.any(axis=1)]).astype(np.int64)
    guess = np.column_stack([guess, ~guess.any(axis=1)]).astype(np.int64)
    return [*labels, NONE_LABEL], truth.T @ guess


def confusion_png(names: list[str], matrix: np.ndarray, path: Path) -> None:
    """PNG heat map of `confusion`: the shared one, so every task type's confusion looks alike."""
    plots.confusion_png(names, matrix, path)


def worst_examples(texts: list[str], sources: list[str], gold: list[list[str]], probs: np.ndarray,
                   labels: list[str], multi_label: bool, k: int,
                   thresholds: np.ndarray | None = None) -> list[dict]:
    """The k misclassified documents the model was most confidently wrong about, worst first, for error analysis.

    Single-label: ordered by the probability of the gold label, lowest first. Multi-label: by the mean over labels
    of the probability on the wrong side (1-p for gold labels, p for the others), highest first; its `gold_probability`
    is the complement, the mean probability on the right side, so the field reads "lower is worse" in both modes.
    Ties keep document order. Each: source, text (first 500 characters), gold, predicted, gold_probability, top (the
    3 highest [label, p]).
    """
    if not len(texts) == len(sources) == len(gold):
        raise ValueError(f"{len(texts)} texts, {len(sources)} sources and {len(gold)} gold label lists differ")
    truth = _gold_matrix(gold, labels, multi_label)
    probs = _check_probs(probs, labels, len(gold))
    pred = _predicted_matrix(probs, multi_label, _check_thresholds(thresholds, labels, multi_label))
    if multi_label:
        gold_probability = np.where(truth, probs, 1.0 - probs).mean(axis=1)
    else:
        gold_probability = probs[truth].astype(np.float64)  # exactly one True per row, in row order
    wrong = np.flatnonzero((truth != pred).any(axis=1))
    ranked = wrong[np.argsort(gold_probability[wrong], kind="stable")][:max(k, 0)]
    out = []
    for i in ranked:
        top = np.argsort(-probs[i], kind="stable")[:3]
        out.append({"source": sources[i], "text": texts[i][:_TEXT_CHARS],
                    "gold": [labels[j] for j in np.flatnonzero(truth[i])],
                    "predicted": [labels[j] for j in np.flatnonzero(pred[i])],
                    "gold_probability": float(gold_probability[i]),
                    "top": [[labels[j], float(probs[i, j])] for j in top]})
    return out
