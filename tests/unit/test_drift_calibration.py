"""The hold-out-calibrated drift checks (nerflow.drift_calibration) on synthetic clustered data: texts come in
documents, each document with its own offset (a topic), as news does. Batches of new documents from the same source
must rarely be flagged, although the permutation tests (nerflow.drift), which assume exchangeable texts, flag most
of them; a shifted source must be flagged."""
from __future__ import annotations

import numpy as np
import pytest

from nerflow import drift, drift_calibration, two_sample

DIM = 8


def documents(rng: np.random.Generator, n_docs: int, shift: float = 0.0) -> tuple[dict, list[int]]:
    """A profile of `n_docs` documents of 3-12 texts; each document's texts share a random offset (its topic)."""
    rows, docs, lengths, labels = [], [], [], []
    for d in range(n_docs):
        size = int(rng.integers(3, 13))
        topic = rng.normal(0.0, 1.0, DIM)
        rows.append(topic + rng.normal(0.0, 0.7, (size, DIM)) + shift)
        lengths.append(rng.poisson(12 + 4 * topic[0] ** 2 + 10 * shift, size) + 1.0)
        labels += [["PER"] if x > 0 else [] for x in rng.normal(topic[1], 1.0, size)]
        docs += [d] * size
    n = len(docs)
    return {"embeddings": np.vstack(rows).astype(np.float32),
            "descriptors": {"words": np.concatenate(lengths), "share": rng.beta(2 + shift * 8, 5, n)},
            "labels": labels, "confidence": np.clip(rng.normal(0.9 - shift / 4, 0.05, n), 0, 1)}, docs


def take(profile: dict, rows) -> dict:
    from nerflow.drift_profile import subset

    return subset(profile, rows)


def test_hold_out_batches_are_whole_documents_drawn_again_when_the_hold_out_is_small():
    docs = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    batches = drift_calibration.holdout_batches(docs, 20, 5, seed=3)
    assert all(len(b) == 20 for b in batches)
    rows_of = {d: [r for r, e in enumerate(docs) if e == d] for d in set(docs)}
    for b in batches:
        rest = b.tolist()
        while rest:   # the batch is whole documents one after another, the last one possibly cut
            whole = rows_of[docs[rest[0]]]
            assert rest[:len(whole)] == whole[:len(rest)], b
            rest = rest[len(whole):]
    assert [b.tolist() for b in batches] == [b.tolist() for b in drift_calibration.holdout_batches(docs, 20, 5, 3)]


def test_new_documents_of_the_same_source_are_rarely_flagged_where_permutation_tests_flag_most():
    rng = np.random.default_rng(0)
    reference, reference_docs = documents(rng, 150)
    holdout, holdout_docs = documents(rng, 300)
    fresh, fresh_docs = documents(rng, 300)              # documents neither the reference nor the hold-out holds
    null = drift_calibration.holdout_null(reference, holdout, holdout_docs, 60, resamples=400, seed=1,
                                          reference_docs=reference_docs)
    judged = drift_calibration.holdout_batches(fresh_docs, 60, 60, seed=2)
    calibrated = sum(drift_calibration.decide(null, take(fresh, rows)).drift for rows in judged)
    permutation = sum(drift.assess(reference, take(fresh, rows), permutations=200, seed=k).drift
                      for k, rows in enumerate(judged[:20]))
    low, high = two_sample.clopper_pearson(calibrated, len(judged))
    assert low <= 0.05, f"{calibrated}/{len(judged)} batches of new documents flagged"    # at or below alpha
    assert permutation >= 15, permutation     # texts of a few documents are not exchangeable with the reference's


@pytest.mark.parametrize("what", ["source", "descriptor"])
def test_a_shifted_source_is_flagged_by_the_checks_it_moves(what):
    rng = np.random.default_rng(5)
    reference, _ = documents(rng, 150)
    holdout, holdout_docs = documents(rng, 200)
    shifted, docs = documents(rng, 60, shift=1.0) if what == "source" else documents(rng, 60)
    if what == "descriptor":
        shifted["descriptors"]["words"] = shifted["descriptors"]["words"] * 3.0
    rows = drift_calibration.holdout_batches(docs, 100, 1, seed=4)[0]
    decision = drift_calibration.assess(reference, holdout, holdout_docs, take(shifted, rows), seed=6)
    flagged = {c.name for c in decision.checks if c.drift}
    assert decision.drift
    if what == "source":
        assert {"embedding", "descriptor:words", "prediction:confidence"} <= flagged
    else:
        assert flagged == {"descriptor:words"}
    assert "Bonferroni" in decision.rule and "drawn by document" in decision.rule
    assert all(c.alpha == pytest.approx(0.05 / 5) for c in decision.checks)   # embedding, 2 descriptors, 2 more


def test_the_null_is_for_one_batch_size():
    rng = np.random.default_rng(1)
    reference, _ = documents(rng, 20)
    holdout, docs = documents(rng, 20)
    for profile in (reference, holdout):   # a descriptor that never moves (no unknown sub-word) is no check
        profile["descriptors"]["unknown_share"] = np.zeros(len(profile["labels"]))
    null = drift_calibration.holdout_null(reference, holdout, docs, 30, resamples=50)
    assert null.descriptors == ["share", "words"]
    assert null.resamples == 200                     # raised: 2 / (0.05 / 5)
    with pytest.raises(ValueError, match="calibrate for its size"):
        drift_calibration.decide(null, take(holdout, range(31)))


def concat(a: tuple[dict, list[int]], b: tuple[dict, list[int]]) -> tuple[dict, list[int]]:
    """Two profiles as one, b's documents numbered after a's."""
    (pa, da), (pb, db) = a, b
    return ({"embeddings": np.vstack([pa["embeddings"], pb["embeddings"]]),
             "descriptors": {k: np.concatenate([v, pb["descriptors"][k]]) for k, v in pa["descriptors"].items()},
             "labels": pa["labels"] + pb["labels"], "confidence": np.concatenate([pa["confidence"], pb["confidence"]])},
            da + [max(da) + 1 + d for d in db])


def tables(rng: np.random.Generator, n_docs: int, rows: int = 24) -> tuple[dict, list[int]]:
    """Documents of `rows` 3-word rows each (a page of football standings among news stories)."""
    n = n_docs * rows
    topics = np.repeat(rng.normal(0.0, 1.0, (n_docs, DIM)), rows, axis=0)
    return {"embeddings": (topics + rng.normal(0.0, 0.7, (n, DIM))).astype(np.float32),
            "descriptors": {"words": np.full(n, 3.0), "share": rng.beta(2, 5, n)},
            "labels": [["PER"] if x > 0 else [] for x in rng.normal(0.0, 1.0, n)],
            "confidence": np.clip(rng.normal(0.9, 0.05, n), 0, 1)}, [k // rows for k in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_documents_calibrate_the_descriptors_beside_a_small_hold_out(seed):
    """The source has a few long documents of short rows (3% of the training split's documents) and the hold-out's
    40 documents happen to hold none: a batch with one such document (half its texts, as CoNLL-2003's standings page
    is 40% of a 200-text batch) is flagged against the hold-out alone, not once the training split's documents join
    the descriptors' null; a batch whose every text is 3x longer still is."""
    rng = np.random.default_rng(seed)
    reference, reference_docs = documents(rng, 150)
    holdout, holdout_docs = documents(rng, 40)
    pool, pool_docs = concat(documents(rng, 570), tables(rng, 20, rows=30))
    news, news_docs = documents(rng, 12)
    assert len(news_docs) >= 60
    fresh, _ = concat((news, news_docs), tables(rng, 1, rows=30))
    batch = take(fresh, [*range(30), *range(len(news_docs), len(news_docs) + 30)])    # 30 news texts, 30 rows
    alone = drift_calibration.holdout_null(reference, holdout, holdout_docs, 60, seed=1, reference_docs=reference_docs)
    pooled = drift_calibration.holdout_null(reference, holdout, holdout_docs, 60, seed=1,
                                            reference_docs=reference_docs, pool=(pool["descriptors"], pool_docs))
    flagged = lambda null, b: {c.name for c in drift_calibration.decide(null, b).checks if c.drift}  # noqa: E731
    assert "descriptor:words" in flagged(alone, batch)
    assert "descriptor:words" not in flagged(pooled, batch)
    assert pooled.sizes["descriptor_pool_texts"] == len(pool_docs)
    assert "training split" in drift_calibration.decide(pooled, batch).rule
    longer = take(news, np.arange(60))
    longer["descriptors"]["words"] = longer["descriptors"]["words"] * 3.0
    assert "descriptor:words" in flagged(pooled, longer)
    # the embedding and the predictions are calibrated on the hold-out alone: the pool changes none of their nulls
    for name in ("embedding", "prediction:labels", "prediction:confidence"):
        assert np.array_equal(alone.null[name], pooled.null[name])
