"""The labelling batch of a drifted batch (nerflow.labelling): only texts in the drifted region, the unsure first,
spread over the region rather than one cluster of near duplicates."""
from __future__ import annotations

import numpy as np
import pytest

from nerflow import labelling


def profile(embeddings: np.ndarray, confidence: np.ndarray) -> dict:
    return {"embeddings": embeddings, "confidence": confidence, "labels": [["PER"]] * len(embeddings)}


def test_the_batch_holds_drifted_texts_spread_over_the_region_the_unsure_first():
    rng = np.random.default_rng(0)
    reference = profile(rng.normal(0, 1, (200, 4)), np.full(200, 0.9))
    like_reference = rng.normal(0, 1, (40, 4))
    cluster_a = rng.normal(0, 0.05, (30, 4)) + [6, 0, 0, 0]    # a repeated headline: 30 near duplicates
    cluster_b = rng.normal(0, 0.05, (3, 4)) + [0, 6, 0, 0]     # a second new kind, rarer
    batch = profile(np.vstack([like_reference, cluster_a, cluster_b]),
                    np.concatenate([np.full(40, 0.2), np.linspace(0.5, 0.9, 30), np.full(3, 0.6)]))
    rows = labelling.choose(batch, reference, 4, bandwidth=2.0)
    assert len(rows) == 4 and len(set(rows)) == 4
    assert all(r >= 40 for r in rows)                 # unsure texts like the reference's are not worth labelling
    assert any(r >= 70 for r in rows)                 # the rarer new kind is in, not four copies of the headline
    # first: a text of the largest drifted cluster among its less sure half (confidence 0.5-0.7 of 0.5-0.9)
    assert 40 <= rows[0] < 70 and batch["confidence"][rows[0]] < 0.7
    w = labelling.witness(batch["embeddings"], reference["embeddings"], 2.0)
    lines = labelling.records([{"text": f"t{k}", "id": k} for k in range(73)], batch, rows, w)
    assert [line["id"] for line in lines] == rows and lines[0]["predicted"] == ["PER"]
    assert all(line["drift_witness"] > 0 for line in lines)


def test_no_drifted_region_no_batch_and_n_must_be_positive():
    rng = np.random.default_rng(1)
    same = profile(rng.normal(0, 1, (50, 3)), np.full(50, 0.5))
    assert labelling.choose(same, same, 5, bandwidth=1.0) == []     # the batch is the reference: nothing drifted
    with pytest.raises(ValueError, match="n >= 1"):
        labelling.choose(same, same, 0, bandwidth=1.0)
