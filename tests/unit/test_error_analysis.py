"""The evaluate stage's error analysis for token classification (nerflow.ner.errors): each entity in one kind, seen
vs unseen and length groups that add up to the headline scores, examples pointing at the predictions file."""
from __future__ import annotations

from collections import Counter

import pytest

from nerflow.ner.data import Sentence
from nerflow.ner.errors import KINDS, analyse, classify, entity_strings, to_html
from nerflow.ner.evaluate import score, write_predictions_conll

#        0        1        2    3        4    5        6        7        8       9    10       11
GOLD = ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "O", "O", "B-MISC", "O", "B-LOC", "O"]
PRED = ["B-PER", "I-PER", "O", "B-ORG", "O", "B-ORG", "I-ORG", "B-LOC", "O", "O", "B-PER", "I-PER"]


def test_each_entity_falls_in_exactly_one_kind():
    cases = {c.kind: c for c in classify(GOLD, PRED)}
    assert Counter(c.kind for c in classify(GOLD, PRED)) == Counter(KINDS)   # one of each, planted
    assert cases["correct"].gold == ("PER", 0, 2)
    assert (cases["type"].gold, cases["type"].pred) == (("LOC", 3, 4), ("ORG", 3, 4))
    assert (cases["boundary"].gold, cases["boundary"].pred) == (("ORG", 5, 6), ("ORG", 5, 7))
    assert (cases["spurious"].gold, cases["spurious"].pred) == (None, ("LOC", 7, 8))
    assert (cases["missed"].gold, cases["missed"].pred) == (("MISC", 8, 9), None)
    assert (cases["boundary_type"].gold, cases["boundary_type"].pred) == (("LOC", 10, 11), ("PER", 10, 12))
    # counted under the gold type, spurious under the predicted one
    assert [cases[k].type for k in KINDS] == ["PER", "LOC", "ORG", "LOC", "LOC", "MISC"]


def split_of(rows):
    tokens = [[f"w{i}" for i in range(len(g))] for g, _ in rows]
    return tokens, [g for g, _ in rows], [p for _, p in rows]


def test_seen_and_length_groups_add_up_to_the_headline_scores():
    tokens = [["Maria", "Lopez", "met", "Ann", "Wu", "."], ["Globex", "hired", "her", "."],
              ["In", "Paris", "it", "rained", "on", "a", "long", "and", "very", "wet", "and", "grey", "Monday", "."]]
    gold = [["B-PER", "I-PER", "O", "B-PER", "I-PER", "O"], ["B-ORG", "O", "O", "O"],
            ["O", "B-LOC", *["O"] * 12]]
    pred = [["B-PER", "I-PER", "O", "O", "O", "O"], ["B-ORG", "O", "B-PER", "O"],
            ["O", "B-LOC", *["O"] * 12]]
    train = entity_strings([["Maria", "Lopez", "and", "Globex"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    assert train == {"Maria Lopez", "Globex"}
    a = analyse(tokens, gold, pred, train, "test")
    seen, unseen = a.seen["seen"], a.seen["unseen"]
    assert (seen.gold, seen.predicted, seen.correct) == (2, 2, 2) and seen.f1 == 1.0
    assert (unseen.gold, unseen.predicted, unseen.correct) == (2, 2, 1)   # Ann Wu missed, Paris right, "her" wrong
    assert unseen.recall == 0.5 and unseen.precision == 0.5
    headline = score(gold, pred)
    total_correct, total_pred, total_gold = (sum(getattr(g, f) for g in a.seen.values())
                                             for f in ("correct", "predicted", "gold"))
    assert total_correct / total_pred == pytest.approx(headline.precision)
    assert total_correct / total_gold == pytest.approx(headline.recall)
    by_length = {k: v for k, v in a.by_length.items() if v.gold or v.predicted}
    assert set(by_length) == {"1-10", "11-20"} and a.sentences_by_length == Counter({"1-10": 2, "11-20": 1})
    assert sum(v.correct for v in a.by_length.values()) == total_correct
    assert by_length["11-20"].f1 == 1.0
    assert a.metrics("test/") == {"test/errors_type": 0.0, "test/errors_boundary": 0.0,
                                  "test/errors_boundary_type": 0.0, "test/errors_spurious": 1.0,
                                  "test/errors_missed": 1.0, "test/seen_entities_f1": 1.0,
                                  "test/unseen_entities_f1": 0.5}


def test_an_entity_two_wrong_predictions_overlap_counts_once_in_the_groups():
    tokens = [["Bank", "of", "New", "York", "said"]]
    gold, pred = [["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O"]], [["B-ORG", "O", "B-LOC", "I-LOC", "O"]]
    a = analyse(tokens, gold, pred, set(), "test")
    assert sum(a.kinds["boundary"].values()) == 1 and sum(a.kinds["boundary_type"].values()) == 1   # per prediction
    unseen = a.seen["unseen"]
    assert (unseen.gold, unseen.predicted, unseen.correct) == (1, 2, 0)
    assert (a.by_length["1-10"].gold, a.by_length["1-10"].predicted) == (1, 2)


def test_examples_point_at_their_sentence_in_the_predictions_file(tmp_path):
    tokens, gold, pred = split_of([(["O", "O"], ["O", "O"]), (GOLD, PRED), (["B-PER", "O", "O"], ["O", "O", "O"])])
    path = tmp_path / "test_predictions.conll"
    write_predictions_conll([Sentence(t, g, f"test.txt:{i}") for i, (t, g) in enumerate(zip(tokens, gold))],
                            pred, path)
    a = analyse(tokens, gold, pred, set(), "test", path.name)
    lines = path.read_text().splitlines()
    missed = a.examples["missed"]
    assert [ex["sentence"] for ex in missed] == [1, 2]
    for ex in missed:
        assert lines[ex["line"] - 1] == f"# source = test.txt:{ex['sentence']}"
        first = ex["spans"]["gold"][0]
        word, g, p = lines[ex["line"] + first].split(" ")
        assert (word, g[0], p) == (tokens[ex["sentence"]][first], "B", pred[ex["sentence"]][first])
    assert sum(a.kinds["missed"].values()) == 2 and a.confused == Counter({("LOC", "ORG"): 1, ("LOC", "PER"): 1})


def test_the_page_is_self_contained_and_escapes_the_text():
    tokens = [["<script>alert(1)</script>", "Corp"]]
    a = analyse(tokens, [["B-ORG", "I-ORG"]], [["O", "O"]], set(), "test", "test_predictions.conll")
    page = to_html([a], "errors <run>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "errors &lt;run&gt;" in page
    assert "src=" not in page and "href=" not in page and "test_predictions.conll:1" in page


def test_mismatched_rows_are_one_clear_error():
    with pytest.raises(ValueError, match="test: 1 sentences, 2 gold and 1 predicted"):
        analyse([["a"]], [["O"], ["O"]], [["O"]], set(), "test")
