"""Drift checks calibrated on the hold-out: the decision `nerflow drift` makes when the version's reference has one.

Why not the permutation tests of nerflow.drift alone: they answer "are these texts exchangeable with the reference's
texts?", and a real batch never is. Its texts come from a few documents (a day's news is a dozen stories, each a
topic with its own names), so they resemble each other more than the reference's texts do, and a permutation test
flags almost every batch: on CoNLL-2003 with the MiniLM champion, no-drift batches drawn from held-out validation
documents were flagged 91% of the time at 50 texts and 99.5% at 1,000 (docs/benchmarks.md, "Drift").

So each check asks instead: is this batch further from the reference than a batch of the same size, drawn **by
document** from the hold-out (validation documents the reference does not hold), usually is from a sample of the
reference's documents? Every check's statistic is computed for the batch against the reference, and for `resamples`
pairs (a bootstrap of the reference's documents, a hold-out batch of whole documents drawn with replacement), and
its p-value is the share of pairs at least as far apart: (1 + #{T_null >= T_batch}) / (1 + resamples). The hold-out
stands for "no drift": documents of the same source as the training data, so topic-to-topic variation between
documents is part of the null, not an alarm; resampling the reference's documents too makes the null two
independent samples of documents, as the batch and the reference are.

The input descriptors depend only on the tokenizer, not on what the model learnt, so the version's training texts
are as good a sample of the source as the hold-out for them, and there are many more of their documents: with a
`pool` (the training texts' descriptors, `training` in the version's reference) the descriptor checks' hold-out
batches are drawn from the hold-out's and the training split's documents together. A batch holding one unusual
document (a page of football standings among news stories) is then judged against a null that has seen documents
like it, where a few dozen hold-out documents may hold none (on CoNLL-2003 this took the descriptors' false alarms at
200 texts from 18 of 200 batches to none: docs/benchmarks.md, "Drift"). The embedding and the predictions are not
pooled: the model was fitted to its training texts, so they sit closer to it than new texts do.

Statistics (each is a distance, larger = further from the reference): `embedding` MMD^2 with the reference's RBF
kernel; each descriptor and the confidence the Kolmogorov-Smirnov D; the predicted labels the total variation distance
between the label shares (a text without a label counts as "(none)"). Bonferroni over the k checks as in
nerflow.drift; `resamples` is raised to 2k / alpha when that is more, so a p-value can fall below alpha / k.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from nerflow.drift import NONE_LABEL, CheckResult, Decision, _label_counts
from nerflow.two_sample import median_bandwidth


def holdout_batches(docs: Sequence[int], n: int, resamples: int, seed: int) -> list[np.ndarray]:
    """Row indices of `resamples` batches of `n` texts from the hold-out, each drawn by document with replacement
    (a cluster bootstrap: whole documents drawn at random until `n` texts, the last one cut), so that a batch as large
    as the hold-out still varies as batches of new documents would, where drawing without replacement would give the
    whole hold-out every time."""
    rows_of: dict[int, list[int]] = {}
    for row, doc in enumerate(docs):
        rows_of.setdefault(int(doc), []).append(row)
    groups = list(rows_of.values())
    if not groups or n < 1:
        raise ValueError(f"no hold-out batch of {n} texts from {len(groups)} hold-out documents")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(resamples):
        rows: list[int] = []
        while len(rows) < n:
            rows += groups[int(rng.integers(len(groups)))]
        out.append(np.asarray(rows[:n], dtype=np.int64))
    return out


def _ks(reference: np.ndarray, values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(stats.ks_2samp(reference, values).statistic) if values.size and reference.size else math.nan


def _tvd(reference: dict[str, int], batch: dict[str, int]) -> float:
    ref_total, batch_total = sum(reference.values()), sum(batch.values())
    return 0.5 * sum(abs(reference.get(k, 0) / ref_total - batch.get(k, 0) / batch_total)
                     for k in set(reference) | set(batch))


def _rbf(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    """k(x_i, y_j) = exp(-|x_i - y_j|^2 / (2 h^2)), float64."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)[:, None] + np.einsum("ij,ij->i", y, y)[None, :] - 2.0 * (x @ y.T)
    return np.exp(-np.maximum(sq, 0.0) / (2.0 * bandwidth**2))


@dataclass
class HoldoutNull:
    """What `resamples` hold-out batches of `n` texts drawn by document look like to each check: built once per
    batch size (the benchmark reuses it for every batch it decides)."""

    n: int
    alpha: float
    per_check: float
    resamples: int
    bandwidth: float
    reference: dict
    ref_kernel_mean: float                 # mean k(r, r') over the reference: MMD^2's constant part
    descriptors: list[str]
    null: dict[str, np.ndarray] = field(default_factory=dict)   # check name -> its statistic on each hold-out batch
    sizes: dict = field(default_factory=dict)
    constant: list[str] = field(default_factory=list)           # descriptors left out: one value everywhere


def _constant(*values: np.ndarray) -> bool:
    joined = np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
    joined = joined[~np.isnan(joined)]
    return joined.size == 0 or bool(np.all(joined == joined[0]))


def holdout_null(reference: dict, holdout: dict, holdout_docs: Sequence[int], n: int, alpha: float = 0.05,
                 resamples: int = 400, seed: int = 0, bandwidth: float | None = None,
                 reference_docs: Sequence[int] | None = None,
                 pool: tuple[dict[str, np.ndarray], Sequence[int]] | None = None) -> HoldoutNull:
    """Every check's statistic on `resamples` hold-out batches of `n` texts drawn by document (`holdout_batches`).
    With `reference_docs` (the reference's document numbers) each is compared with a bootstrap of the reference's
    documents too, not the reference itself: two independent samples of documents from the source, so the null holds
    how far any two sets of documents are apart, not only how the hold-out's few documents vary around this
    reference (which, measured on CoNLL-2003, under-states how far new documents fall: docs/benchmarks.md, "Drift").
    With `pool` ((descriptors, document numbers) of the training texts) the descriptor checks draw their hold-out
    batches from the hold-out's and the pool's documents together (module docstring).
    A descriptor with one value in every reference and hold-out text (no unknown sub-word in a vocabulary that has
    none) cannot move and is left out of the checks."""
    both = sorted(set(reference["descriptors"]) & set(holdout["descriptors"]))
    if pool is not None:
        both = [name for name in both if name in pool[0]]
    described = _pooled(holdout, holdout_docs, pool)
    constant = [name for name in both if _constant(reference["descriptors"][name], described[0][name])]
    shared = [name for name in both if name not in constant]
    k = 1 + len(shared) + 2     # embedding, descriptors, labels, confidence
    per_check = alpha / k
    resamples = max(resamples, math.ceil(2 / per_check))
    draws = holdout_batches(holdout_docs, n, resamples, seed)
    n_ref = len(reference["labels"])
    refs = holdout_batches(reference_docs, n_ref, resamples, seed + 1) if reference_docs is not None else \
        [np.arange(n_ref)] * resamples
    h = float(bandwidth) if bandwidth else median_bandwidth(reference["embeddings"], seed=seed)
    ref_e = reference["embeddings"]
    ref_mean = float(_rbf(ref_e, ref_e, h).mean())
    # MMD^2 of each pair (reference sample, hold-out batch) as a quadratic form over reference + hold-out rows
    kernel = _rbf(np.concatenate([ref_e, holdout["embeddings"]]), np.concatenate([ref_e, holdout["embeddings"]]), h)
    weights = np.zeros((kernel.shape[0], resamples))
    for j, (ref_rows, rows) in enumerate(zip(refs, draws)):
        np.add.at(weights[:, j], ref_rows, -1.0 / n_ref)
        np.add.at(weights[:, j], n_ref + rows, 1.0 / n)
    null = {"embedding": np.sum(weights * (kernel @ weights), axis=0)}
    del kernel, weights
    pooled, pooled_docs = described
    described_draws = draws if pool is None else holdout_batches(pooled_docs, n, resamples, seed + 2)
    for name in shared:
        ref = np.asarray(reference["descriptors"][name], dtype=np.float64)
        hold = pooled[name]
        null[f"descriptor:{name}"] = np.array([_ks(_finite(ref[r]), hold[rows])
                                               for r, rows in zip(refs, described_draws)])
    null["prediction:labels"] = np.array([_tvd(_label_counts([reference["labels"][i] for i in r]),
                                               _label_counts([holdout["labels"][i] for i in rows]))
                                          for r, rows in zip(refs, draws)])
    ref_conf = np.asarray(reference["confidence"], dtype=np.float64)
    hold_conf = np.asarray(holdout["confidence"], dtype=np.float64)
    null["prediction:confidence"] = np.array([_ks(_finite(ref_conf[r]), hold_conf[rows])
                                              for r, rows in zip(refs, draws)])
    return HoldoutNull(n, alpha, per_check, resamples, h, reference, ref_mean, shared, null,
                       {"n_reference": n_ref, "n_holdout": len(holdout["labels"]), "holdout_batches": resamples,
                        "reference_resampled": reference_docs is not None,
                        "descriptor_pool_texts": 0 if pool is None else len(pool[1]),
                        "descriptor_pool_documents": 0 if pool is None else len(set(pool[1]))}, constant)


def _pooled(holdout: dict, holdout_docs: Sequence[int], pool: tuple[dict[str, np.ndarray], Sequence[int]] | None,
            ) -> tuple[dict[str, np.ndarray], list[int]]:
    """(descriptor -> values, document numbers) of the hold-out followed by the pool's texts, the pool's documents
    numbered after the hold-out's so that no two documents share a number."""
    docs = [int(d) for d in holdout_docs]
    values = {k: np.asarray(v, dtype=np.float64) for k, v in holdout["descriptors"].items()}
    if pool is None:
        return values, docs
    descriptors, pool_docs = pool
    offset = max(docs, default=-1) + 1
    return ({k: np.concatenate([v, np.asarray(descriptors[k], dtype=np.float64)]) for k, v in values.items()
             if k in descriptors}, docs + [offset + int(d) for d in pool_docs])


def _finite(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def decide(null: HoldoutNull, batch: dict) -> Decision:
    """Every check of `batch` against the reference, each p-value the share of `null`'s hold-out batches at least
    as far; drift when any check has p < alpha / k."""
    reference, n = null.reference, len(batch["labels"])
    if n != null.n:
        raise ValueError(f"the hold-out batches have {null.n} texts, this batch {n}: calibrate for its size")
    sizes = {**null.sizes, "n_batch": n}
    e = batch["embeddings"]
    mmd = float(_rbf(e, e, null.bandwidth).mean() - 2.0 * _rbf(e, reference["embeddings"], null.bandwidth).mean()
                + null.ref_kernel_mean)
    checks = [_check("embedding", "embedding", "MMD^2 (RBF kernel)", mmd, null.null["embedding"], null.per_check,
                     {**sizes, "bandwidth": null.bandwidth})]
    for name in null.descriptors:
        ref = np.asarray(reference["descriptors"][name], dtype=np.float64)
        ref = ref[~np.isnan(ref)]
        new = np.asarray(batch["descriptors"][name], dtype=np.float64)
        checks.append(_check(f"descriptor:{name}", "descriptor", "Kolmogorov-Smirnov D", _ks(ref, new),
                             null.null[f"descriptor:{name}"], null.per_check, {
                                 **sizes, "reference_mean": float(ref.mean()), "batch_mean": float(np.nanmean(new)),
                                 "reference_median": float(np.median(ref)), "batch_median": float(np.nanmedian(new))}))
    for name in null.constant:
        checks.append(CheckResult(f"descriptor:{name}", "descriptor", "Kolmogorov-Smirnov D", math.nan, math.nan,
                                  null.per_check, False, {**sizes, "reason": "left out: one value in every reference "
                                                          "and hold-out text, so nothing to compare"}))
    ref_counts, batch_counts = _label_counts(reference["labels"]), _label_counts(batch["labels"])
    checks.append(_check("prediction:labels", "prediction", "total variation distance of the label shares",
                         _tvd(ref_counts, batch_counts), null.null["prediction:labels"], null.per_check, {
                             **sizes, "reference_counts": ref_counts, "batch_counts": batch_counts,
                             "reference_share": {k: v / sum(ref_counts.values()) for k, v in ref_counts.items()},
                             "batch_share": {k: v / sum(batch_counts.values()) for k, v in batch_counts.items()},
                             "none_label": NONE_LABEL}))
    ref_conf = np.asarray(reference["confidence"], dtype=np.float64)
    ref_conf = ref_conf[~np.isnan(ref_conf)]
    new_conf = np.asarray(batch["confidence"], dtype=np.float64)
    if ref_conf.size >= 2 and np.sum(~np.isnan(new_conf)) >= 2:
        checks.append(_check("prediction:confidence", "prediction", "Kolmogorov-Smirnov D", _ks(ref_conf, new_conf),
                             null.null["prediction:confidence"], null.per_check,
                             {**sizes, "reference_mean": float(ref_conf.mean()),
                              "batch_mean": float(np.nanmean(new_conf))}))
    else:
        checks.append(CheckResult("prediction:confidence", "prediction", "Kolmogorov-Smirnov D", math.nan, math.nan,
                                  null.per_check, False,
                                  {**sizes, "reason": "skipped: fewer than 2 confidence values"}))
    k = 1 + len(null.descriptors) + 2
    pooled = (f" (the descriptors' batches drawn from the training split's documents too: "
              f"{null.sizes['descriptor_pool_texts']} texts)") if null.sizes.get("descriptor_pool_texts") else ""
    rule = (f"drift when any of the {k} checks is further from the reference than hold-out batches of {n} texts "
            f"drawn by document{pooled}: p < {null.alpha:g}/{k} = {null.per_check:.4g} against {null.resamples} of "
            f"them (Bonferroni, family-wise alpha {null.alpha:g})")
    return Decision(any(c.drift for c in checks), rule, null.alpha, checks)


def assess(reference: dict, holdout: dict, holdout_docs: Sequence[int], batch: dict, alpha: float = 0.05,
           resamples: int = 400, seed: int = 0, bandwidth: float | None = None,
           reference_docs: Sequence[int] | None = None,
           pool: tuple[dict[str, np.ndarray], Sequence[int]] | None = None) -> Decision:
    """`decide` with hold-out batches of the batch's own size."""
    return decide(holdout_null(reference, holdout, holdout_docs, len(batch["labels"]), alpha, resamples, seed,
                               bandwidth, reference_docs, pool), batch)


def _check(name: str, kind: str, statistic_name: str, observed: float, null: np.ndarray, level: float,
           detail: dict) -> CheckResult:
    null = np.asarray(null, dtype=np.float64)
    null = null[~np.isnan(null)]
    # ties count as "at least as far" (a relative tolerance: the hold-out and the batch are summed differently)
    p = float((1 + np.sum(null >= observed - 1e-9 * abs(observed))) / (1 + null.size))
    return CheckResult(name, kind, statistic_name,    # the rule says what the p-value is against
                       float(observed), p, level, bool(p < level),
                       {**detail, "holdout_p95": float(np.percentile(null, 95)) if null.size else math.nan})
