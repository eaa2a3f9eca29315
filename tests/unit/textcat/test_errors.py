"""The evaluate stage's error analysis for text classification (nerflow.textcat.errors): accuracy by length, the
confused label pairs of single- and multi-label texts, examples pointing at the predictions file."""
from __future__ import annotations

import json

import pytest

from nerflow.textcat.errors import NONE, analyse, confused_pairs, to_html


def test_pairs_of_single_and_multi_label_texts():
    assert confused_pairs(["pos"], ["pos"], multi_label=False) == []
    assert confused_pairs(["pos"], ["neg"], multi_label=False) == [("pos", "neg")]
    assert confused_pairs(["LOC", "PER"], ["PER", "LOC"], multi_label=True) == []   # a set: order is no error
    assert confused_pairs(["LOC", "PER"], ["ORG", "PER"], multi_label=True) == [("LOC", "ORG")]
    assert confused_pairs(["LOC", "MISC"], [], multi_label=True) == [("LOC", NONE), ("MISC", NONE)]
    assert confused_pairs([], ["ORG"], multi_label=True) == [(NONE, "ORG")]


def test_accuracy_by_length_and_examples_point_at_the_predictions_file(tmp_path):
    texts = ["good", "bad film", " ".join(["word"] * 50), " ".join(["long"] * 60), "fine <b>really</b>"]
    gold = [["pos"], ["neg"], ["pos"], ["neg"], ["pos"]]
    predicted = [["pos"], ["pos"], ["pos"], ["pos"], ["neg"]]
    path = tmp_path / "test_predictions.jsonl"   # as evaluation writes it: one line per text, split order
    path.write_text("".join(json.dumps({"source": f"reviews.csv:{i + 2}", "gold": g, "predicted": p}) + "\n"
                            for i, (g, p) in enumerate(zip(gold, predicted))))
    a = analyse(texts, [f"reviews.csv:{i + 2}" for i in range(5)], gold, predicted, False, "test", path.name)
    data = a.to_json()
    assert data["by_length"] == {"1-10": {"texts": 3, "accuracy": pytest.approx(1 / 3)},
                                 "31-100": {"texts": 2, "accuracy": 0.5}}
    pairs = {(r["gold"], r["predicted"]): r for r in data["confused_pairs"]}
    assert {k: r["texts"] for k, r in pairs.items()} == {("neg", "pos"): 2, ("pos", "neg"): 1}
    lines = path.read_text().splitlines()
    for r in pairs.values():
        for ex in r["examples"]:
            row = json.loads(lines[ex["line"] - 1])
            assert (row["source"], row["gold"], row["predicted"]) == (ex["source"], ex["gold"], ex["predicted"])
    page = to_html([a], "errors")
    assert "<b>really</b>" not in page and "&lt;b&gt;really&lt;/b&gt;" in page and "<script" not in page
    assert "test_predictions.jsonl:5" in page


def test_mismatched_lists_are_one_clear_error():
    with pytest.raises(ValueError, match="test: 1 texts, 1 sources, 2 gold and 1 predicted"):
        analyse(["a"], ["s"], [["x"], ["y"]], [["x"]], False, "test")
