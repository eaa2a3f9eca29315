"""Evaluation functions against hand-worked examples: every expected number is derived in the comments."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nerflow.ner.data import Sentence
from nerflow.ner.evaluate import (
    EntityScores,
    plot_type_confusion,
    read_predictions_conll,
    score,
    type_confusion,
    write_predictions_conll,
)

approx = pytest.approx


def test_three_gold_two_predicted_one_correct():
    # gold PER: (0,1) (2,4) (5,6) -> 3 entities
    # pred PER: (0,1) correct, (2,3) boundary error -> 2 predicted, 1 correct
    # P = 1/2, R = 1/3, F1 = 2*(1/2*1/3)/(1/2+1/3) = (1/3)/(5/6) = 0.4
    gold = [["B-PER", "O", "B-PER", "I-PER", "O", "B-PER"]]
    pred = [["B-PER", "O", "B-PER", "O", "O", "O"]]
    s = score(gold, pred)
    assert (s.precision, s.recall, s.f1) == (approx(0.5), approx(1 / 3), approx(0.4))
    assert s.per_type == {"PER": {"precision": approx(0.5), "recall": approx(1 / 3), "f1": approx(0.4),
                                  "support": 3}}


def test_strict_mode_does_not_count_i_after_o():
    # pred "I-PER" after nothing opens no entity in strict IOB2 (lenient seqeval would count PER(0,1), a hit).
    # gold: PER(0,1), LOC(2,3); pred: LOC(2,3) only -> P = 1/1, R = 1/2, F1 = 2*1*0.5/1.5 = 2/3
    gold = [["B-PER", "O", "B-LOC"]]
    pred = [["I-PER", "O", "B-LOC"]]
    s = score(gold, pred)
    assert (s.precision, s.recall, s.f1) == (approx(1.0), approx(0.5), approx(2 / 3))
    assert s.per_type["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_strict_mode_applies_to_gold_too():
    # gold "O I-PER" holds no entity; the predicted PER(1,2) is a false positive: P = 0/1, R = 0/0 -> 0 (zero_division)
    s = score([["O", "I-PER"]], [["O", "B-PER"]])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    assert s.per_type == {"PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}


def test_i_of_another_type_ends_the_entity():
    # pred "B-PER I-LOC": PER(0,1) then an I-LOC that opens nothing; gold PER(0,2) -> boundary error, 0 hits
    s = score([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)


def test_type_mismatch():
    # gold PER(0,2), LOC(3,4); pred ORG(0,2) (right span, wrong type), LOC(3,4)
    # micro: 1 hit of 2 predicted and 2 gold -> P = R = F1 = 1/2
    # per type: LOC 1/1/1; PER no prediction -> P 0 (zero_division), R 0/1; ORG R 0/0 -> 0, P 0/1
    # macro averages over every type seen in gold or pred (seqeval): (1 + 0 + 0) / 3 = 1/3
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-ORG", "I-ORG", "O", "B-LOC"]]
    s = score(gold, pred)
    assert (s.precision, s.recall, s.f1) == (approx(0.5), approx(0.5), approx(0.5))
    assert (s.macro_precision, s.macro_recall, s.macro_f1) == (approx(1 / 3), approx(1 / 3), approx(1 / 3))
    assert s.per_type == {
        "LOC": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        "PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
    }


def test_boundary_error_across_sentences():
    # sentence 0: gold LOC(0,3), pred LOC(0,2) -> too short, no hit
    # sentence 1: gold LOC(0,1), pred LOC(0,1) -> hit
    # 2 gold, 2 predicted, 1 hit -> P = R = F1 = 1/2
    gold = [["B-LOC", "I-LOC", "I-LOC", "O"], ["B-LOC", "O"]]
    pred = [["B-LOC", "I-LOC", "O", "O"], ["B-LOC", "O"]]
    s = score(gold, pred)
    assert (s.precision, s.recall, s.f1) == (approx(0.5), approx(0.5), approx(0.5))


def test_entities_do_not_cross_sentence_boundaries():
    # "B-PER" | "I-PER" as two sentences is PER(0,1) in sentence 0 and nothing in sentence 1, not one 2-token PER
    s = score([["B-PER"], ["I-PER"]], [["B-PER"], ["O"]])
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)


def test_macro_vs_micro_two_types():
    # PER: 3 gold, 3 predicted, 3 hits -> P = R = F1 = 1
    # LOC: gold (6,8), pred (6,7) boundary error -> P = R = F1 = 0
    # micro: 3 hits / 4 predicted, 3 hits / 4 gold -> P = R = F1 = 0.75
    # macro: (1 + 0) / 2 = 0.5 for P, R and F1
    gold = [["B-PER", "O", "B-PER", "O", "B-PER", "O", "B-LOC", "I-LOC"]]
    pred = [["B-PER", "O", "B-PER", "O", "B-PER", "O", "B-LOC", "O"]]
    s = score(gold, pred)
    assert (s.precision, s.recall, s.f1) == (approx(0.75), approx(0.75), approx(0.75))
    assert (s.macro_precision, s.macro_recall, s.macro_f1) == (approx(0.5), approx(0.5), approx(0.5))
    # weighted by support: (1*3 + 0*1) / 4
    assert s.report["weighted avg"]["f1-score"] == approx(0.75)


@pytest.fixture
def mixed() -> EntityScores:
    # PER: gold (0,2) (3,4); pred (0,2) hit, (3,4) missed  -> P = 1/1, R = 1/2, F1 = 2/3
    # LOC: gold (5,6); pred (5,6) hit, (7,8) spurious       -> P = 1/2, R = 1/1, F1 = 2/3
    # micro: 2 hits, 3 predicted, 3 gold -> P = R = F1 = 2/3
    # macro: P = (1 + 1/2)/2 = 0.75, R = (1/2 + 1)/2 = 0.75, F1 = (2/3 + 2/3)/2 = 2/3
    gold = [["B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "O", "O", "B-LOC", "O", "B-LOC"]]
    return score(gold, pred)


def test_per_type_numbers(mixed):
    assert mixed.per_type == {
        "LOC": {"precision": approx(0.5), "recall": approx(1.0), "f1": approx(2 / 3), "support": 1},
        "PER": {"precision": approx(1.0), "recall": approx(0.5), "f1": approx(2 / 3), "support": 2},
    }
    assert (mixed.precision, mixed.recall, mixed.f1) == (approx(2 / 3), approx(2 / 3), approx(2 / 3))
    assert (mixed.macro_precision, mixed.macro_recall, mixed.macro_f1) == (approx(0.75), approx(0.75),
                                                                           approx(2 / 3))


def test_metrics_are_flat_and_named_as_in_the_catalogue(mixed):
    # docs/metrics.md: micro P/R/F1, macro F1, then the per-type fields asked for
    assert mixed.metrics("test/") == {
        "test/precision": approx(2 / 3), "test/recall": approx(2 / 3), "test/f1": approx(2 / 3),
        "test/f1_macro": approx(2 / 3),
        "test/f1_LOC": approx(2 / 3), "test/precision_LOC": approx(0.5), "test/recall_LOC": approx(1.0),
        "test/support_LOC": 1.0,
        "test/f1_PER": approx(2 / 3), "test/precision_PER": approx(1.0), "test/recall_PER": approx(0.5),
        "test/support_PER": 2.0,
    }
    assert mixed.metrics("val/best_", per_type=("f1",)) == {
        "val/best_precision": approx(2 / 3), "val/best_recall": approx(2 / 3), "val/best_f1": approx(2 / 3),
        "val/best_f1_macro": approx(2 / 3), "val/best_f1_LOC": approx(2 / 3), "val/best_f1_PER": approx(2 / 3),
    }
    assert all(type(v) is float for v in mixed.metrics("x/").values())


def test_report_is_json_ready_and_text_has_four_digits(mixed):
    report = json.loads(json.dumps(mixed.report))  # raises on numpy scalars
    assert report["PER"] == {"precision": 1.0, "recall": 0.5, "f1-score": approx(2 / 3), "support": 2}
    assert set(report) == {"LOC", "PER", "micro avg", "macro avg", "weighted avg"}
    assert type(mixed.report["PER"]["support"]) is int
    assert "0.6667" in mixed.report_text and "PER" in mixed.report_text


def test_hyphenated_type_and_metric_name():
    s = score([["B-WORK-OF-ART", "I-WORK-OF-ART"]], [["B-WORK-OF-ART", "I-WORK-OF-ART"]])
    assert s.per_type["WORK-OF-ART"]["f1"] == 1.0
    assert s.metrics("val/best_")["val/best_f1_WORK-OF-ART"] == 1.0


# the last case has tags but no strict entity on either side (stray I-X only)
@pytest.mark.parametrize("gold, pred", [([], []), ([["O", "O"]], [["O", "O"]]), ([["I-PER", "O"]], [["O", "I-LOC"]])])
def test_no_entities_at_all_gives_zeros(gold, pred):
    s = score(gold, pred)
    assert (s.precision, s.recall, s.f1, s.macro_precision, s.macro_recall, s.macro_f1) == (0, 0, 0, 0, 0, 0)
    assert s.per_type == {}
    assert s.metrics("test/")["test/f1"] == 0.0
    json.dumps(s.report)


def test_predictions_without_gold_entities_are_false_positives():
    s = score([["O", "O"]], [["B-PER", "O"]])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    assert s.per_type["PER"]["support"] == 0


def test_length_mismatch_names_the_sentence():
    with pytest.raises(ValueError, match="gold has 2 sentences but pred has 1"):
        score([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match=r"sentence 1: gold has 2 tags but pred has 3"):
        score([["O"], ["O", "O"]], [["O"], ["O", "O", "O"]])
    with pytest.raises(ValueError, match="sentence 0"):
        type_confusion([["O"]], [["O", "O"]])


def test_malformed_tag_names_the_sentence():
    with pytest.raises(ValueError, match=r"sentence 1: pred tag 'PER' is not IOB2"):
        score([["O"], ["B-PER"]], [["O"], ["PER"]])


def test_type_confusion_counts():
    # token pairs (gold type -> pred type): PER->PER, PER->LOC, O->O, LOC->O | O->ORG
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O"]]
    pred = [["B-PER", "B-LOC", "O", "O"], ["B-ORG"]]
    labels, matrix = type_confusion(gold, pred)
    assert labels == ["LOC", "ORG", "PER", "O"]
    #                         LOC ORG PER O   (predicted)
    np.testing.assert_array_equal(matrix, [[0, 0, 0, 1],   # gold LOC
                                           [0, 0, 0, 0],   # gold ORG
                                           [1, 0, 1, 0],   # gold PER
                                           [0, 1, 0, 1]])  # gold O
    assert matrix.sum() == 5


def test_type_confusion_only_o():
    labels, matrix = type_confusion([["O", "O"]], [["O", "O"]])
    assert labels == ["O"]
    np.testing.assert_array_equal(matrix, [[2]])


def test_plot_type_confusion_writes_png(tmp_path):
    # the all-zero ORG row must not divide by zero when normalising
    labels, matrix = type_confusion([["B-PER", "O"]], [["B-ORG", "O"]])
    path = tmp_path / "plots" / "confusion.png"
    plot_type_confusion(labels, matrix, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_predictions_file_roundtrip(tmp_path):
    sentences = [Sentence(["John", "lives", "in", "New York"], ["B-PER", "O", "O", "B-LOC"], "train.conll:3"),
                 Sentence(["#", "tag"], ["O", "O"], "train.conll:9")]
    pred = [["B-PER", "O", "O", "O"], ["B-MISC", "O"]]
    path = tmp_path / "predictions.conll"
    write_predictions_conll(sentences, pred, path)
    assert path.read_text(encoding="utf-8").splitlines()[:3] == ["# source = train.conll:3", "John B-PER B-PER",
                                                                  "lives O O"]
    assert path.read_text(encoding="utf-8").endswith("# source = train.conll:9\n# O B-MISC\ntag O O\n\n")
    tokens, gold, got = read_predictions_conll(path)
    assert tokens == [s.tokens for s in sentences]
    assert gold == [s.tags for s in sentences]
    assert got == pred


def test_write_predictions_rejects_misaligned(tmp_path):
    sentences = [Sentence(["a", "b"], ["O", "O"], "x:1")]
    with pytest.raises(ValueError, match="sentence 0: gold has 2 tags but pred has 1"):
        write_predictions_conll(sentences, [["O"]], tmp_path / "p.conll")


def test_read_predictions_reports_bad_line(tmp_path):
    path = tmp_path / "p.conll"
    path.write_text("# source = x:1\nJohn B-PER\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.conll:2: expected 'token gold pred'"):
        read_predictions_conll(path)
