"""The text-classification gate across label sets: classes only one model knows are masked, as NER masks entity
types (nerflow.textcat.scoring.gate_tables -> nerflow.promotion.decide). Hand-made served predictions; every
expected number is derived in the comments."""
from __future__ import annotations

import pytest

from nerflow.promotion import GateRules, decide
from nerflow.textcat.scoring import gate_tables

approx = pytest.approx

# The champion (version 1) knows a, b and x; the challenger (version 2) was trained without x. 12 test texts.
GOLD = [["a"]] * 4 + [["b"]] * 4 + [["x"]] * 4
CHAMPION = {"labels": ["a", "b", "x"], "multi_label": False,
            "pred": [["a"]] * 4 + [["b"]] * 3 + [["a"]] + [["x"]] * 4}       # one b text taken for a
CHALLENGER = {"labels": ["a", "b"], "multi_label": False,
              "pred": [["a"]] * 4 + [["b"]] * 4 + [["a"]] * 4}              # x texts: it must pick a or b


def test_single_label_texts_of_a_class_one_model_lacks_do_not_count_against_the_other():
    chal, champ, restricted = gate_tables(GOLD, {"2": CHALLENGER, "1": CHAMPION}, ("2", "1"))
    # Full tables. Challenger: a tp 4 fp 4 -> F1 8/12; b 1; x (gold only) 0 -> macro (2/3 + 1 + 0)/3 = 5/9.
    # Champion: a tp 4 fp 1 -> 8/9; b tp 3 fn 1 -> 6/7; x 1 -> macro (8/9 + 6/7 + 1)/3.
    assert chal["f1"] == approx(5 / 9) and champ["f1"] == approx((8 / 9 + 6 / 7 + 1) / 3)
    # Shared classes a, b; the 4 x texts are left out (the challenger could only be wrong on them).
    # Challenger: a tp 4 fp 0 -> 1; b 1 -> macro 1. Champion: unchanged on a and b -> (8/9 + 6/7)/2.
    # Averaging the full tables' a and b rows instead would give the challenger (2/3 + 1)/2 = 5/6 < the champion's.
    r_chal, r_champ = restricted
    assert (r_chal["f1"], r_champ["f1"]) == (approx(1.0), approx((8 / 9 + 6 / 7) / 2))
    assert r_chal["types"] == r_champ["types"] == ["a", "b"] and set(r_chal["per_type"]) == {"a", "b"}
    assert r_chal["per_type"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 4}

    d = decide(chal, champ, GateRules(), data_passed=True, restricted=restricted)
    assert d.accepted, d.reason
    assert d.shared_types == ("a", "b") and (d.challenger_f1, d.champion_f1) == (approx(1.0), approx(0.873015873))
    assert "compared on the 2 shared types only (a, b)" in d.reason
    rows = {r["type"]: r for r in d.rows}
    assert rows["x"]["flag"] == "not_shared" and rows["x"]["delta_f1"] is None


def test_the_same_label_sets_are_compared_on_the_full_tables():
    champion = {**CHAMPION, "labels": ["a", "b"], "pred": [["a"]] * 8 + [["b"]] * 4}
    assert gate_tables(GOLD[:8] + [["b"]] * 4, {"2": CHALLENGER, "1": champion}, ("2", "1"))[2] is None


def test_multi_label_texts_stay_with_the_shared_part_of_their_labels():
    gold = [["a", "x"], ["x"], ["b"], []]
    champion = {"labels": ["a", "b", "x"], "multi_label": True, "pred": [["a", "x"], ["x"], ["b"], []]}
    challenger = {"labels": ["a", "b"], "multi_label": True, "pred": [["a"], ["a"], ["b"], ["b"]]}
    _, _, (r_chal, r_champ) = gate_tables(gold, {"2": challenger, "1": champion}, ("2", "1"))
    # Gold on a, b: {a}, {}, {b}, {}. Challenger: a tp 1 fp 1 (text 1: an a it could have left out) -> 2/3;
    # b tp 1 fp 1 (text 3) -> 2/3; macro 2/3. Champion: a and b exact -> 1.
    assert (r_chal["f1"], r_champ["f1"]) == (approx(2 / 3), approx(1.0))
    assert r_chal["per_type"]["a"]["support"] == 1
