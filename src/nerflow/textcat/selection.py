"""What a multi-label epoch is scored and chosen by, and the positive weights of its loss.

With fixed 0.5 thresholds a rare label stays below threshold long after the model has learnt to rank it (its
sigmoid is pulled down by the many texts without it), so validation F1 at 0.5 can sit flat while the model learns,
and early stopping fires on that flat number. Each epoch is therefore also scored with per-label thresholds tuned on
validation (`evaluate.choose_thresholds`, the rule the saved model's thresholds follow) and by macro average
precision, which needs no threshold at all. `SELECTS` is the one that picks the best epoch and drives early stopping.
"""
from __future__ import annotations

import numpy as np

from nerflow.textcat import evaluate

# Macro average precision decides the best multi-label epoch: it rises as soon as a label's positives move up the
# ranking, before any threshold catches them, and it is not fitted to the validation texts it scores (tuned F1 is:
# on a rare label with a handful of validation positives it moves in big steps and favours whichever epoch's
# thresholds happen to fit those few texts). The thresholds served are tuned on validation afterwards either way.
SELECTS = "average_precision"
POS_WEIGHT_MAX = 10.0   # train.pos_weight=auto: a label in 1% of the texts would otherwise weigh 99x, and its loss


def macro_average_precision(gold: list[list[str]], probs: np.ndarray, labels: list[str]) -> float:
    """Mean over the labels with at least one gold positive of sklearn's average precision (the area under the
    label's precision-recall curve, as a step function): a label without a positive has no ranking to score and is
    left out, rather than adding a constant 0 that no model can change. 0.0 when no label has a positive."""
    from sklearn.metrics import average_precision_score

    truth = evaluate._gold_matrix(gold, labels, multi_label=True)
    probs = evaluate._check_probs(probs, labels, len(gold))
    scored = truth.any(axis=0)
    if not scored.any():
        return 0.0
    return float(average_precision_score(truth[:, scored], probs[:, scored], average="macro"))


def multi_label_scores(gold: list[list[str]], probs: np.ndarray, labels: list[str]
                       ) -> tuple[dict[str, float], np.ndarray]:
    """An epoch's multi-label validation scores beside those at 0.5 (`val/<name>`, docs/metrics.md), and the
    per-label thresholds they were tuned with: the thresholds saved with this epoch's weights if they are kept."""
    thresholds = evaluate.choose_thresholds(gold, probs, labels)
    tuned = evaluate.score(gold, probs, labels, True, thresholds)
    return {"f1_tuned": tuned.macro_f1, "accuracy_tuned": tuned.accuracy,
            "average_precision": macro_average_precision(gold, probs, labels)}, thresholds


def positive_weights(example_labels: list[list[int]], n_labels: int, setting: str | float) -> list[float] | None:
    """`train.pos_weight` as one weight per label for binary cross-entropy (None: unweighted). `auto`: the label's
    negatives / positives among the training examples (what the loss sums over: windows or texts), at most
    POS_WEIGHT_MAX; a label with no positive gets 1 (it has no positive term to weight)."""
    if setting == "none":
        return None
    if setting != "auto":
        return [float(setting)] * n_labels
    positives = np.zeros(n_labels)
    for row in example_labels:
        positives[sorted(set(row))] += 1
    negatives = len(example_labels) - positives
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return [float(w) for w in np.clip(weights, None, POS_WEIGHT_MAX)]
