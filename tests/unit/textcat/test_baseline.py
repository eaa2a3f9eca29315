"""The TF-IDF baseline of `nerflow curve --baseline` chooses its C on validation (nerflow.textcat.baseline)."""
from __future__ import annotations

import json
import random

from nerflow.textcat import baseline
from nerflow.textcat.data import Document, write_split


def weak_signal_corpus(folder, seed: int = 3):
    """Two labels whose words overlap a lot (8 words a text, 30% from its label's half of 200), so the
    regularisation matters."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(200)]

    def doc(label: str) -> Document:
        half = words[:100] if label == "pos" else words[100:]
        text = " ".join(rng.choice(half) if rng.random() < 0.3 else rng.choice(words) for _ in range(8))
        return Document(text, [label], "synthetic")

    folder.mkdir()
    for split, n in (("train", 60), ("validation", 60), ("test", 60)):
        write_split([doc(["pos", "neg"][k % 2]) for k in range(n)], folder / f"{split}.jsonl")
    (folder / "labels.json").write_text(json.dumps(["neg", "pos"]))
    (folder / "task.json").write_text(json.dumps({"multi_label": False}))
    return folder


def test_the_baseline_is_scored_with_the_c_that_is_best_on_validation(tmp_path, monkeypatch):
    folder = weak_signal_corpus(tmp_path / "validated")
    each = {}
    for c in baseline.C_GRID:   # the baseline with a single C, one after the other
        monkeypatch.setattr(baseline, "C_GRID", (c,))
        each[c] = baseline.tfidf_scores(folder, seed=0)
    assert len({round(r["val/f1"], 6) for r in each.values()}) > 1   # the choice matters on this corpus
    monkeypatch.undo()
    chosen = baseline.tfidf_scores(folder, seed=0)
    best = max(each[c]["val/f1"] for c in baseline.C_GRID)
    assert chosen["val/f1"] == best and chosen["C"] == min(c for c in baseline.C_GRID if each[c]["val/f1"] == best)
    assert chosen["test/f1"] == each[chosen["C"]]["test/f1"]   # its test score is that C's, not the default's
