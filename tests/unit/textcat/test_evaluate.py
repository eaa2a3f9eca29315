"""Text-classification evaluation against hand-worked examples: every expected number is derived in the comments."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nerflow.reliability import expected_calibration_error, reliability_png
from nerflow.textcat.evaluate import (
    ClassScores,
    calibration,
    choose_thresholds,
    confusion,
    confusion_png,
    predicted_labels,
    score,
    worst_examples,
)

approx = pytest.approx

# Single-label, 3 classes, 6 documents.
LABELS = ["a", "b", "c"]
GOLD = [["a"], ["a"], ["a"], ["b"], ["b"], ["c"]]
PROBS = np.array([
    [0.8, 0.1, 0.1],    # d0 gold a, pred a  (top 0.8, right)
    [0.6, 0.3, 0.1],    # d1 gold a, pred a  (top 0.6, right)
    [0.3, 0.6, 0.1],    # d2 gold a, pred b  (top 0.6, wrong; p(gold) 0.3)
    [0.1, 0.7, 0.2],    # d3 gold b, pred b  (top 0.7, right)
    [0.2, 0.35, 0.45],  # d4 gold b, pred c  (top 0.45, wrong; p(gold) 0.35)
    [0.1, 0.1, 0.8],    # d5 gold c, pred c  (top 0.8, right)
])

# Multi-label, 3 labels, 4 documents (d2 has no gold label).
ML_LABELS = ["x", "y", "z"]
ML_GOLD = [["x", "y"], ["y"], [], ["x", "z"]]
ML_PROBS = np.array([
    [0.9, 0.4, 0.2],
    [0.3, 0.7, 0.6],
    [0.1, 0.2, 0.3],
    [0.6, 0.1, 0.35],
])
ML_THRESHOLDS = np.array([0.5, 0.35, 0.3])


def test_single_label_scores_by_hand():
    # pred: a a b b c c -> 4 of 6 right: accuracy 2/3
    # a: tp 2 (d0 d1), fp 0, fn 1 (d2) -> P 1, R 2/3, F1 2*2/(4+0+1) = 4/5
    # b: tp 1 (d3), fp 1 (d2), fn 1 (d4) -> P 1/2, R 1/2, F1 1/2
    # c: tp 1 (d5), fp 1 (d4), fn 0 -> P 1/2, R 1, F1 2/(2+1) = 2/3
    # macro P (1 + 1/2 + 1/2)/3 = 2/3; R (2/3 + 1/2 + 1)/3 = 13/18; F1 (4/5 + 1/2 + 2/3)/3 = (24+15+20)/90 = 59/90
    # micro: one gold and one predicted label per document -> P = R = F1 = accuracy = 2/3
    s = score(GOLD, PROBS, LABELS, multi_label=False, bins=3)
    assert s.accuracy == approx(2 / 3)
    assert s.per_class == {"a": {"precision": approx(1.0), "recall": approx(2 / 3), "f1": approx(0.8), "support": 3},
                           "b": {"precision": approx(0.5), "recall": approx(0.5), "f1": approx(0.5), "support": 2},
                           "c": {"precision": approx(0.5), "recall": approx(1.0), "f1": approx(2 / 3), "support": 1}}
    assert (s.macro_precision, s.macro_recall, s.macro_f1) == (approx(2 / 3), approx(13 / 18), approx(59 / 90))
    assert (s.micro_precision, s.micro_recall, s.micro_f1) == (approx(2 / 3), approx(2 / 3), approx(2 / 3))
    # ECE, 3 bins [0,1/3) [1/3,2/3) [2/3,1]:
    # middle: tops 0.6 (right) 0.6 (wrong) 0.45 (wrong) -> acc 1/3, mean conf 1.65/3 = 0.55, gap 0.55-1/3 = 13/60
    # top:    tops 0.8 0.7 0.8, all right -> acc 1, mean conf 2.3/3, gap 0.7/3 = 14/60
    # ECE = 3/6 * 13/60 + 3/6 * 14/60 = 27/120 = 0.225
    assert s.ece == approx(0.225)


def test_macro_counts_a_label_with_no_support_and_no_prediction_as_zero():
    # Label "d" is in the label set but in neither gold nor predictions (its probability is always 0): P = R = F1 = 0,
    # and the macro average runs over all four labels: F1 (4/5 + 1/2 + 2/3 + 0)/4 = 59/120, not 59/90.
    # Micro does not change (d adds no tp/fp/fn): 2/3.
    probs = np.column_stack([PROBS, np.zeros(len(PROBS))])
    s = score(GOLD, probs, [*LABELS, "d"], multi_label=False)
    assert s.per_class["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert s.macro_f1 == approx(59 / 120)
    assert s.macro_precision == approx((1 + 0.5 + 0.5) / 4)
    assert s.micro_f1 == approx(2 / 3)


def test_multi_label_with_thresholds_by_hand():
    # thresholds x 0.5, y 0.35, z 0.3 (p >= t):
    # d0 {x,y} (0.9 0.4; z 0.2 < 0.3) = gold; d1 {y,z} != {y}; d2 {z} (0.3 >= 0.3) != {}; d3 {x,z} = gold
    # exact match 2/4 = 0.5
    # x: tp 2, fp 0, fn 0 -> 1 1 1; y: tp 2 (d0 d1) -> 1 1 1; z: tp 1 (d3), fp 2 (d1 d2) -> P 1/3, R 1, F1 2/4 = 1/2
    # macro P (1 + 1 + 1/3)/3 = 7/9, R 1, F1 (1 + 1 + 1/2)/3 = 5/6; micro tp 5 fp 2 fn 0 -> P 5/7, R 1, F1 10/12
    assert predicted_labels(ML_PROBS, ML_LABELS, True, ML_THRESHOLDS) == [["x", "y"], ["y", "z"], ["z"], ["x", "z"]]
    s = score(ML_GOLD, ML_PROBS, ML_LABELS, multi_label=True, thresholds=ML_THRESHOLDS)
    assert s.accuracy == approx(0.5)
    assert s.per_class["z"] == {"precision": approx(1 / 3), "recall": approx(1.0), "f1": approx(0.5), "support": 1}
    assert (s.macro_precision, s.macro_recall, s.macro_f1) == (approx(7 / 9), approx(1.0), approx(5 / 6))
    assert (s.micro_precision, s.micro_recall, s.micro_f1) == (approx(5 / 7), approx(1.0), approx(5 / 6))


def test_multi_label_default_threshold_half_by_hand():
    # t = 0.5: d0 {x} (y 0.4 missed), d1 {y,z}, d2 {} (= gold, the only exact match), d3 {x} (z 0.35 missed)
    # exact match 1/4; x: 1 1 1; y: tp 1, fn 1 -> P 1, R 1/2, F1 2/3; z: tp 0, fp 1 (d1), fn 1 (d3) -> 0 0 0
    # macro F1 (1 + 2/3 + 0)/3 = 5/9; micro tp 3 fp 1 fn 2 -> P 3/4, R 3/5, F1 6/(6+1+2) = 2/3
    assert predicted_labels(ML_PROBS, ML_LABELS, True) == [["x"], ["y", "z"], [], ["x"]]
    s = score(ML_GOLD, ML_PROBS, ML_LABELS, multi_label=True)
    assert s.accuracy == approx(0.25)
    assert s.per_class["y"] == {"precision": approx(1.0), "recall": approx(0.5), "f1": approx(2 / 3), "support": 2}
    assert s.per_class["z"]["precision"] == 0.0  # never right: zero_division=0
    assert s.macro_f1 == approx(5 / 9)
    assert (s.micro_precision, s.micro_recall, s.micro_f1) == (approx(0.75), approx(0.6), approx(2 / 3))


def test_scores_agree_with_sklearn_on_random_multi_label_data():
    from sklearn.metrics import accuracy_score, f1_score, precision_score

    rng = np.random.default_rng(0)
    labels = ["p", "q", "r", "s"]
    probs = rng.random((40, 4))
    truth = rng.random((40, 4)) < 0.4
    gold = [[labels[j] for j in np.flatnonzero(row)] for row in truth]
    thresholds = np.array([0.3, 0.5, 0.6, 0.7])
    pred = probs >= thresholds
    s = score(gold, probs, labels, multi_label=True, thresholds=thresholds)
    kwargs = {"zero_division": 0}
    assert s.macro_f1 == approx(f1_score(truth, pred, average="macro", **kwargs))
    assert s.micro_f1 == approx(f1_score(truth, pred, average="micro", **kwargs))
    assert s.macro_precision == approx(precision_score(truth, pred, average="macro", **kwargs))
    assert s.accuracy == approx(accuracy_score(truth, pred))


def test_predicted_labels_single_label_is_argmax():
    assert predicted_labels(PROBS, LABELS, multi_label=False) == [["a"], ["a"], ["b"], ["b"], ["c"], ["c"]]


def test_choose_thresholds_moves_off_half_when_half_is_wrong():
    # x: positives d0 d1 at 0.45 0.40, negatives 0.30 0.10. At 0.5 nothing is predicted: F1 0.
    #    midpoints of 0.10 0.30 0.40 0.45: 0.2 (3 predicted, tp 2 fp 1: F1 4/5), 0.35 (tp 2: F1 1), 0.425 (tp 1: 2/3)
    #    -> 0.35
    # y: positives 0.8 0.6 -> 0.5 and the midpoint 0.4 both give F1 1 (same split): the tie goes to 0.5
    # z: no gold positive -> stays 0.5
    gold = [["x", "y"], ["x", "y"], [], []]
    probs = np.array([[0.45, 0.8, 0.9], [0.40, 0.6, 0.1], [0.30, 0.2, 0.2], [0.10, 0.1, 0.3]])
    assert choose_thresholds(gold, probs, ["x", "y", "z"]) == approx([0.35, 0.5, 0.5])


def test_choose_thresholds_prefers_the_tied_candidate_closest_to_half():
    # positives at 0.6 and 0.45, negatives at 0.55, 0.52, 0.05; candidates 0.5 and midpoints 0.25 0.485 0.535 0.575:
    # 0.25 -> {0.45 0.52 0.55 0.6}: tp 2 fp 2 -> 4/6 = 2/3      0.485 and 0.5 -> {0.52 0.55 0.6}: tp 1 fp 2 fn 1 -> 2/5
    # 0.535 -> {0.55 0.6}: tp 1 fp 1 fn 1 -> 1/2                0.575 -> {0.6}: tp 1 fn 1 -> 2/3
    # 0.25 and 0.575 tie at 2/3; 0.575 is closer to 0.5 (0.075 against 0.25), so the lowest candidate does not win
    gold = [["u"], [], [], ["u"], []]
    probs = np.array([[0.6], [0.55], [0.52], [0.45], [0.05]])
    assert choose_thresholds(gold, probs, ["u"]) == approx([0.575])


def test_ece_by_hand_with_two_bins():
    # bins [0, 0.5) and [0.5, 1] (0.5 opens the upper bin, 1.0 is inside the closed last bin)
    # low:  0.1 (wrong) 0.4 (right) -> acc 1/2, mean conf 0.25, gap 0.25, weight 2/5 -> 0.1
    # high: 0.5 (wrong) 0.8 (right) 1.0 (wrong) -> acc 1/3, mean conf 2.3/3, gap 1.3/3, weight 3/5 -> 0.26
    # ECE = 0.36 (0.5 in the low bin would give 0 + 2/5 * |1/2 - 0.9| = 0.16; dropping 1.0 would give 0.225)
    confidence = np.array([0.1, 0.4, 0.5, 0.8, 1.0])
    correct = np.array([False, True, False, True, False])
    assert expected_calibration_error(confidence, correct, bins=2) == approx(0.36)


def test_ece_of_perfect_and_empty_input():
    # one bin [0, 1]: mean conf 0.5, acc 1/2 -> 0
    assert expected_calibration_error(np.array([0.2, 0.8]), np.array([False, True]), bins=1) == approx(0.0)
    assert expected_calibration_error(np.array([]), np.array([]), bins=15) == 0.0


def test_calibration_pairs():
    # single-label: top probability, argmax == gold (d2 and d4 are wrong)
    confidence, correct = calibration(PROBS, GOLD, LABELS, multi_label=False)
    assert confidence == approx([0.8, 0.6, 0.6, 0.7, 0.45, 0.8])
    assert correct.tolist() == [True, True, False, True, False, True]
    # multi-label: every (document, label) probability, row by row, and whether the label is gold
    confidence, correct = calibration(ML_PROBS, ML_GOLD, ML_LABELS, multi_label=True)
    assert confidence == approx(ML_PROBS.ravel())
    assert correct.tolist() == [True, True, False, False, True, False, False, False, False, True, False, True]


def test_worst_examples_single_label():
    # misclassified: d2 (p(gold a) 0.3) and d4 (p(gold b) 0.35) -> d2 first; right documents never qualify
    texts = [f"text {i}" for i in range(6)]
    texts[2] = "w" * 600
    sources = [f"f.jsonl:{i + 1}" for i in range(6)]
    worst = worst_examples(texts, sources, GOLD, PROBS, LABELS, multi_label=False, k=5)
    assert [w["source"] for w in worst] == ["f.jsonl:3", "f.jsonl:5"]
    first = worst[0]
    assert first["text"] == "w" * 500
    assert (first["gold"], first["predicted"], first["gold_probability"]) == (["a"], ["b"], approx(0.3))
    assert first["top"] == [["b", approx(0.6)], ["a", approx(0.3)], ["c", approx(0.1)]]
    assert worst_examples(texts, sources, GOLD, PROBS, LABELS, multi_label=False, k=1)[0]["source"] == "f.jsonl:3"
    json.dumps(worst)


def test_worst_examples_multi_label_orders_by_mean_wrong_side_probability():
    # t = 0.5 misclassifies d0, d1, d3 (d2 predicted {} = gold). Wrong side: 1-p for gold labels, p for others:
    # d0 gold {x,y}: 0.1 0.6 0.2 -> 0.3; d1 gold {y}: 0.3 0.3 0.6 -> 0.4; d3 gold {x,z}: 0.4 0.1 0.65 -> 0.3833
    # worst first: d1, d3, d0; gold_probability = 1 - wrong side: 0.6, 0.6167, 0.7
    worst = worst_examples(["t0", "t1", "t2", "t3"], ["s0", "s1", "s2", "s3"], ML_GOLD, ML_PROBS, ML_LABELS,
                           multi_label=True, k=10)
    assert [w["source"] for w in worst] == ["s1", "s3", "s0"]
    assert [w["gold_probability"] for w in worst] == approx([0.6, 1 - 1.15 / 3, 0.7])
    assert (worst[0]["gold"], worst[0]["predicted"]) == (["y"], ["y", "z"])
    # with the tuned thresholds d1 and d2 are wrong: d1 0.4, d2 (gold {}) 0.1 0.2 0.3 -> 0.2
    worst = worst_examples(["t0", "t1", "t2", "t3"], ["s0", "s1", "s2", "s3"], ML_GOLD, ML_PROBS, ML_LABELS,
                           multi_label=True, k=10, thresholds=ML_THRESHOLDS)
    assert [(w["source"], w["predicted"]) for w in worst] == [("s1", ["y", "z"]), ("s2", ["z"])]


def test_metrics_names_and_values():
    s = score(GOLD, PROBS, LABELS, multi_label=False, bins=3)
    m = s.metrics("test/")
    per_class = {f"test/{field}_{label}" for field in ("f1", "precision", "recall", "support") for label in LABELS}
    assert set(m) == {"test/f1", "test/accuracy", "test/f1_macro", "test/f1_micro", "test/precision", "test/recall",
                      "test/ece"} | per_class
    assert m["test/f1"] == approx(59 / 90)  # macro, not micro (2/3)
    assert m["test/f1_micro"] == approx(2 / 3)
    assert m["test/precision"] == approx(2 / 3) and m["test/recall"] == approx(13 / 18)
    assert m["test/ece"] == approx(0.225)
    assert (m["test/f1_c"], m["test/support_a"]) == (approx(2 / 3), 3.0)
    assert all(type(v) is float for v in m.values())
    only_f1 = s.metrics("val/", per_class_fields=("f1",))
    assert {k for k in only_f1 if k.endswith(("_a", "_b", "_c"))} == {"val/f1_a", "val/f1_b", "val/f1_c"}


def test_metric_names_sanitise_labels():
    s = score([["sci:fi"], ["true crime"]], np.array([[0.9, 0.1], [0.2, 0.8]]), ["sci:fi", "true crime"], False)
    assert {"f1_sci_fi", "f1_true crime"} <= set(s.metrics(""))
    assert "sci:fi" in s.per_class


def test_report_is_json_ready_and_readable():
    s = score(GOLD, PROBS, LABELS, multi_label=False)
    assert isinstance(s, ClassScores)
    report = json.loads(json.dumps(s.report))
    assert report["macro avg"]["f1-score"] == approx(59 / 90)
    assert report["a"] == {"precision": 1.0, "recall": approx(2 / 3), "f1-score": approx(0.8), "support": 3}
    assert report["accuracy"] == approx(2 / 3)
    assert "0.6556" in s.report_text  # macro F1 59/90, 4 digits
    assert "accuracy" in s.report_text and "macro avg" in s.report_text


def test_unknown_gold_label_names_document_and_label():
    with pytest.raises(ValueError, match=r"document 1: gold label 'zzz'"):
        score([["a"], ["zzz"]], PROBS[:2], LABELS, multi_label=False)
    with pytest.raises(ValueError, match=r"document 2: gold label 'w'"):
        choose_thresholds([["x"], [], ["w"], []], ML_PROBS, ML_LABELS)


def test_input_checks():
    with pytest.raises(ValueError, match="exactly one label"):
        score([["a", "b"], ["a"]], PROBS[:2], LABELS, multi_label=False)
    with pytest.raises(ValueError, match="not logits"):
        score(GOLD, PROBS * 3, LABELS, multi_label=False)
    with pytest.raises(ValueError, match="probs has 5 rows"):
        score(GOLD, PROBS[:5], LABELS, multi_label=False)
    with pytest.raises(ValueError, match="one value per label"):
        predicted_labels(ML_PROBS, ML_LABELS, True, np.array([0.5, 0.5]))


def test_single_label_confusion():
    # gold a a a b b c, pred a a b b c c -> row a: 2 1 0, row b: 0 1 1, row c: 0 0 1
    names, matrix = confusion(GOLD, predicted_labels(PROBS, LABELS, False), LABELS)
    assert names == LABELS
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_multi_label_confusion_counts_pairs_and_none():
    # d0 {x,y} -> {x}: (x,x) (y,x); d1 {y} -> {y,z}: (y,y) (y,z); d2 {} -> {}: (none,none);
    # d3 {x,z} -> {x}: (x,x) (z,x); d4 {z} -> {}: (z,none); d5 {} -> {y}: (none,y)
    gold = [["x", "y"], ["y"], [], ["x", "z"], ["z"], []]
    pred = [["x"], ["y", "z"], [], ["x"], [], ["y"]]
    names, matrix = confusion(gold, pred, ML_LABELS)
    assert names == ["x", "y", "z", "(none)"]
    assert matrix.tolist() == [[2, 0, 0, 0],
                               [1, 1, 1, 0],
                               [1, 0, 0, 1],
                               [0, 1, 0, 1]]
    # forced multi-label form on one-label documents still gets the (none) row/column, all zero
    names, matrix = confusion([["x"]], [["y"]], ML_LABELS, multi_label=True)
    assert names[-1] == "(none)" and matrix[0, 1] == 1 and matrix.sum() == 1


def test_pngs_are_written(tmp_path):
    confidence, correct = calibration(PROBS, GOLD, LABELS, multi_label=False)
    reliability_png(confidence, correct, 5, tmp_path / "reliability.png")
    names, matrix = confusion(ML_GOLD, predicted_labels(ML_PROBS, ML_LABELS, True), ML_LABELS)
    confusion_png(names, matrix, tmp_path / "plots" / "confusion.png")
    for name in ("reliability.png", "plots/confusion.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
