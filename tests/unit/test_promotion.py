"""The promotion gate's rules on hand-built score tables (no model); shared types via score_restricted by hand."""
from __future__ import annotations

import json

import pytest

from nerflow.ner.evaluate import score, score_restricted
from nerflow.promotion import (
    FLAG_LOW_SUPPORT,
    FLAG_NOT_SHARED,
    FLAG_TYPE_DROP,
    GateRules,
    comparison_markdown,
    decide,
    decision_json,
)

approx = pytest.approx
RULES = GateRules()


def table(**types: tuple[float, int]) -> dict:
    """TYPE=(f1, support); P = R = F1 per type, and micro F1 is the support-weighted mean (close enough here)."""
    per_type = {t: {"precision": f, "recall": f, "f1": f, "support": n} for t, (f, n) in types.items()}
    total = sum(n for _, n in types.values())
    return {"f1": sum(f * n for f, n in types.values()) / total, "per_type": per_type}


def test_first_champion_accepted():
    d = decide(table(PER=(0.8, 40)), None, RULES, data_passed=True)
    assert d.accepted and "no champion yet" in d.reason
    assert d.champion_f1 is None and d.shared_types is None
    assert d.rows[0]["champion_f1"] is None and d.rows[0]["flag"] == ""


def test_better_challenger_accepted():
    d = decide(table(PER=(0.9, 40), LOC=(0.8, 40)), table(PER=(0.8, 40), LOC=(0.8, 40)), RULES, True)
    assert d.accepted
    assert (d.challenger_f1, d.champion_f1) == (approx(0.85), approx(0.8))
    assert "0.8500" in d.reason and "0.8000" in d.reason


def test_worse_challenger_rejected_with_reason():
    d = decide(table(PER=(0.7, 40)), table(PER=(0.8, 40)), RULES, True)
    assert not d.accepted
    assert "challenger F1 0.7000 vs champion F1 0.8000" in d.reason and "champion stays" in d.reason


def test_tie_keeps_the_champion():
    # CPU training is deterministic: a rerun scores exactly the same. min_delta 0.0 and strict ">" -> tie rejects.
    d = decide(table(PER=(0.8, 40)), table(PER=(0.8, 40)), GateRules(min_delta=0.0), True)
    assert not d.accepted and "tie" in d.reason


def test_min_delta_respected():
    champ = table(PER=(0.80, 40))
    assert not decide(table(PER=(0.805, 40)), champ, GateRules(min_delta=0.01), True).accepted
    # exactly min_delta (0.81 - 0.80 is 0.01000000000000009 in floats) is not "more than": rejected
    assert not decide(table(PER=(0.81, 40)), champ, GateRules(min_delta=0.01), True).accepted
    d = decide(table(PER=(0.82, 40)), champ, GateRules(min_delta=0.01), True)
    assert d.accepted


def test_floor_rejects_an_all_O_model_even_without_champion():
    # A model that predicts only O finds nothing: every type F1 0, micro F1 0.
    all_o = {"f1": 0.0, "per_type": {"PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 40}}}
    d = decide(all_o, None, RULES, True)
    assert not d.accepted and "below the floor" in d.reason and "0.1000" in d.reason


def test_type_drop_on_supported_type_rejects_although_overall_is_higher():
    # micro F1 rises 0.80 -> 0.85, but LOC (30 test entities) falls 0.90 -> 0.85: a 0.05 drop > 0.02.
    chal = {"f1": 0.85, "per_type": {"PER": {"precision": 1.0, "recall": 1.0, "f1": 0.95, "support": 50},
                                     "LOC": {"precision": 0.85, "recall": 0.85, "f1": 0.85, "support": 30}}}
    champ = {"f1": 0.80, "per_type": {"PER": {"precision": 0.7, "recall": 0.7, "f1": 0.70, "support": 50},
                                      "LOC": {"precision": 0.9, "recall": 0.9, "f1": 0.90, "support": 30}}}
    d = decide(chal, champ, RULES, True)
    assert not d.accepted
    assert "higher overall" in d.reason and "LOC 0.9000 -> 0.8500 (30 test entities)" in d.reason
    flags = {r["type"]: r["flag"] for r in d.rows}
    assert flags == {"LOC": FLAG_TYPE_DROP, "PER": ""}
    loc = next(r for r in d.rows if r["type"] == "LOC")
    assert loc["delta_f1"] == approx(-0.05) and loc["support"] == 30


def test_same_drop_on_low_support_type_does_not_reject():
    chal = table(PER=(0.95, 50), LOC=(0.85, 5))
    champ = table(PER=(0.70, 50), LOC=(0.90, 5))
    d = decide(chal, champ, RULES, True)
    assert d.accepted
    assert {r["type"]: r["flag"] for r in d.rows} == {"LOC": FLAG_LOW_SUPPORT, "PER": ""}


def test_drop_of_exactly_max_type_drop_is_allowed():
    # 0.90 - 0.88 is 0.020000000000000018 in floats: "more than 0.02" must not trip on that.
    d = decide(table(PER=(0.95, 50), LOC=(0.88, 30)), table(PER=(0.70, 50), LOC=(0.90, 30)), RULES, True)
    assert d.accepted and all(r["flag"] == "" for r in d.rows)


def test_failed_data_validation_rejects_first():
    d = decide(table(PER=(0.9, 40)), None, RULES, data_passed=False)
    assert not d.accepted and "data validation failed" in d.reason


def test_rolled_back_challenger_rejected():
    d = decide(table(PER=(0.9, 40)), table(PER=(0.5, 40)), RULES, True, challenger_rolled_back=True)
    assert not d.accepted and "rolled back" in d.reason


def _table(gold: list[list[str]], pred: list[list[str]]) -> dict:
    s = score(gold, pred)
    return {"f1": s.f1, "per_type": s.per_type}


# Challenger knows PER, LOC, MISC; the champion only PER, LOC. Same (current) test gold for both.
GOLD = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-MISC"], ["B-LOC", "O", "B-PER", "O"]]
CHAL = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-MISC"], ["B-LOC", "O", "O", "B-MISC"]]
CHAMP = [["B-PER", "O", "O", "B-LOC", "O", "O"], ["B-LOC", "O", "B-PER", "O"]]


def test_score_restricted_by_hand():
    # Shared {PER, LOC}, MISC masked to O on both sides (so the challenger's stray B-MISC is no false positive).
    # gold: PER(0,2) LOC(3,4) | LOC(0,1) PER(2,3) = 4.  challenger: PER(0,2) LOC(3,4) | LOC(0,1) = 3, all right.
    # P = 3/3, R = 3/4, F1 = 2 * 0.75 / 1.75 = 6/7.
    r = score_restricted(GOLD, CHAL, {"PER", "LOC"})
    assert r["f1"] == approx(6 / 7)
    assert set(r["per_type"]) == {"PER", "LOC"}
    assert r["per_type"]["PER"] == {"precision": approx(1.0), "recall": approx(0.5), "f1": approx(2 / 3),
                                    "support": 2}
    # champion: PER(0,1) wrong boundary, LOC(3,4), LOC(0,1), PER(2,3) right: P = R = 3/4, F1 = 0.75.
    assert score_restricted(GOLD, CHAMP, {"PER", "LOC"})["f1"] == approx(0.75)
    # Unrestricted, the challenger: gold 5, pred 5, 4 right -> 0.8; the champion: gold 5, pred 4, 3 right -> 2/3.
    assert _table(GOLD, CHAL)["f1"] == approx(0.8) and _table(GOLD, CHAMP)["f1"] == approx(2 / 3)


def test_score_restricted_rejects_malformed_tag_of_a_dropped_type():
    with pytest.raises(ValueError, match="MISC"):
        score_restricted([["O", "MISC"]], [["O", "O"]], {"PER"})


def test_shared_types_comparison_says_so_and_shows_both_figures():
    keep = {"PER", "LOC"}
    restricted = (score_restricted(GOLD, CHAL, keep), score_restricted(GOLD, CHAMP, keep))
    d = decide(_table(GOLD, CHAL), _table(GOLD, CHAMP), GateRules(min_support=20), True, restricted=restricted)
    assert d.accepted  # 6/7 > 0.75; supports are 2, so no per-type rule can reject
    assert d.shared_types == ("LOC", "PER")
    assert (d.challenger_f1, d.champion_f1) == (approx(6 / 7), approx(0.75))
    assert (d.challenger_full_f1, d.champion_full_f1) == (approx(0.8), approx(2 / 3))
    assert "shared types only (LOC, PER)" in d.reason
    assert "challenger F1 0.8571 vs champion F1 0.7500" in d.reason
    rows = {r["type"]: r for r in d.rows}
    assert set(rows) == {"PER", "LOC", "MISC"}
    assert rows["MISC"]["flag"] == FLAG_NOT_SHARED and rows["MISC"]["delta_f1"] is None
    assert "shared types only" in comparison_markdown(d)


def test_markdown_has_every_type_row_and_the_decision():
    d = decide(table(PER=(0.9, 40), LOC=(0.8, 3), **{"WORK|ART": (0.5, 25)}),
               table(PER=(0.8, 40), LOC=(0.9, 3), **{"WORK|ART": (0.5, 25)}), RULES, True)
    md = comparison_markdown(d)
    for etype in ("| PER |", "| LOC |", "| WORK\\|ART |"):
        assert etype in md
    assert md.splitlines()[0].startswith("| type | support |")
    assert f"**{'accepted' if d.accepted else 'rejected'}**: {d.reason}" in md


def test_decision_json_is_json_ready():
    d = decide(table(PER=(0.9, 40)), table(PER=(0.8, 40)), RULES, True)
    out = json.loads(json.dumps(decision_json(d)))
    assert out["decision"] == "accepted" and out["rules"]["min_support"] == 20
    assert out["rows"][0]["type"] == "PER" and out["shared_types"] is None
