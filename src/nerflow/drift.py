"""Data-drift checks: does a batch of texts look like the reference texts a model was trained and evaluated on?

Pure statistics on feature arrays (what `nerflow drift` turns texts into): numpy, scipy and scikit-learn only.
A profile is {"embeddings": (n, d) array, "descriptors": {name: (n,) array}, "labels": one list of predicted labels
per text, "confidence": (n,) array, NaN where a text has no prediction}; `assess` compares two profiles.

What each check measures
- embedding: MMD^2 (maximum mean discrepancy, RBF kernel) between the model's own pooled embeddings of the two
  sets: the squared distance between the kernel mean embeddings of the two distributions. With an RBF kernel it is 0
  only when the distributions are equal, and it sees any change of the joint distribution of all dimensions (a new
  topic, register or language), not one coordinate at a time. The embeddings are the model's own because drift that
  matters is drift in what the model reads; a generic sentence encoder would measure another geometry.
- descriptor:<name>: two-sample Kolmogorov-Smirnov on one scalar per text (length, share of unknown words, ...): the
  largest gap between the two empirical distribution functions. Says *what* moved when the embedding check fires.
- prediction:labels: chi-square test of homogeneity on the counts of predicted labels (entity types for NER), "(none)"
  for a text with no prediction. Rare categories (expected count < 5) are merged first, where the chi-square
  approximation would be poor. The test treats every label as an independent draw: exact for one label per text,
  anti-conservative (p too small) when one text carries several correlated entity labels.
- prediction:confidence: Kolmogorov-Smirnov on the model's confidence (texts without a prediction dropped).

Why MMD with a permutation p-value, and no fixed threshold: the raw MMD^2 has no universal scale (it depends on the
model, the width of its embeddings, the bandwidth and the sample sizes), so a threshold tuned on one model misleads
on the next. Under "no drift" the pooled rows are exchangeable: the observed split into reference and batch is one of
many equally likely splits, so comparing the statistic with P random re-splits, p = (1 + #{permuted >= observed}) /
(1 + P), gives P(p <= alpha) <= alpha (an exact level), at any sample size, dimension or model, with no distributional
assumption. Exchangeable means independent texts on both sides: a batch of consecutive sentences from a few documents
differs from randomly drawn reference sentences even without drift. The bandwidth is the median pairwise distance of
the reference embeddings, so it is fixed for a reference and statistics of successive batches are comparable.

Why Bonferroni: each check run alone at level alpha raises a false alarm with probability alpha; k checks at once
raise at least one with probability 1 - (1 - alpha)^k when they are independent (0.34 for k = 8 at 0.05), and up to
k * alpha in general. Running each at alpha / k keeps the family-wise false-alarm rate <= alpha under any
dependence between the checks. The price is power: correlated checks (descriptors and embeddings often are) make it
conservative.

What the permutation count costs: the smallest p-value P permutations can give is 1 / (P + 1), so the embedding check
can only fire if 1 / (P + 1) < alpha / k (8 checks at 0.05: P >= 160); `assess` raises P to 2k / alpha when the
one asked for is fewer (the count used is in the check's detail). The p-value is valid for any P; more permutations
make it less random (its Monte Carlo standard error is about sqrt(p (1 - p) / P)) and so give more power near the
threshold. Time: one N x N kernel, O(N^2 d), then O(N^2 P) for the permutations (N = n_reference + n_batch), as
float32 matrix products; memory 4 N^2 bytes (27 MB at N = 2,600); 0.2-0.5 s at N = 2,600, d = 384, P = 500 on 2
busy CPU cores. Each permutation of `classifier_test` refits a model k-fold, which is why MMD is the default.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats
from scipy.spatial.distance import pdist

NONE_LABEL = "(none)"   # the category of a text with no predicted label
MIN_EXPECTED = 5        # the usual rule for the chi-square approximation
CHUNK_ELEMENTS = 1 << 22  # permutation columns per matrix product: keep K @ A's chunk near 16 MB of float32


@dataclass(frozen=True)
class CheckResult:
    name: str           # "embedding", "descriptor:<name>", "prediction:labels", "prediction:confidence"
    kind: str           # "embedding" | "descriptor" | "prediction"
    test: str           # what was computed, in words
    statistic: float    # NaN when the check could not run
    p_value: float      # NaN when the check could not run
    alpha: float        # the per-check level p_value was compared with (after Bonferroni)
    drift: bool         # p_value < alpha; False when the check could not run (detail["reason"] says why)
    detail: dict = field(default_factory=dict)   # reference and batch summaries, n_reference, n_batch

    def record(self) -> dict:
        """JSON-able dict of all fields: floats to 6 significant digits, NaN as None."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Decision:
    drift: bool                 # any check drifts
    rule: str                   # the rule in words: number of checks, per-check alpha, family-wise alpha
    alpha: float                # the family-wise alpha
    checks: list[CheckResult]

    def record(self) -> dict:
        return {"drift": self.drift, "rule": self.rule, "alpha": _jsonable(self.alpha),
                "checks": [check.record() for check in self.checks]}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):   # numpy scalars become Python's bool, int, float
        value = value.item()
    if isinstance(value, float):        # significant digits, not decimals: a p-value of 3e-12 must not become 0
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value


def _matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{what}: expected a non-empty (rows, dims) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    return x


def _pair(reference: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference, batch = _matrix(reference, "reference"), _matrix(batch, "batch")
    if reference.shape[1] != batch.shape[1]:
        raise ValueError(f"embedding widths differ: reference has {reference.shape[1]} dims, "
                         f"batch has {batch.shape[1]}")
    return reference, batch


def median_bandwidth(x: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of the rows of x (on a seeded subsample of at most max_points rows)."""
    x = _matrix(x, "embeddings")
    if x.shape[0] < 2:
        raise ValueError("median_bandwidth needs at least 2 rows")
    if x.shape[0] > max_points:
        x = x[np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False)]
    distances = pdist(x)
    median = float(np.median(distances))
    if median > 0:
        return median
    # more than half the rows coincide: fall back on the typical distinct distance, or 1 when all rows are equal
    positive = distances[distances > 0]
    return float(np.median(positive)) if positive.size else 1.0


def _rbf_kernel(z: np.ndarray, bandwidth: float) -> np.ndarray:
    """Double-centred RBF kernel (float32). Centring leaves every a^T K a with sum(a) = 0 unchanged, but removes the
    large common part of K that float32 sums would otherwise cancel (all-equal rows give exactly 0)."""
    z = (z - z.mean(axis=0)).astype(np.float32)
    sq = np.einsum("ij,ij->i", z, z)
    k = z @ z.T             # squared distances by one matmul, in place: no N x N temporaries
    k *= -2.0
    k += sq[:, None]
    k += sq[None, :]
    np.maximum(k, 0.0, out=k)   # rounding can leave tiny negatives
    k *= np.float32(-0.5 / bandwidth**2)
    np.exp(k, out=k)
    rows = k.mean(axis=1, dtype=np.float64).astype(np.float32)
    k -= rows[:, None]
    k -= rows[None, :]
    k += rows.mean(dtype=np.float64).astype(np.float32)
    return k


def _permutation_weights(n_reference: int, n_batch: int, permutations: int, seed: int) -> np.ndarray:
    """(N, 1 + permutations) float32: column 0 is the observed split, +1/m on batch rows (the last n_batch) and
    -1/n on reference rows; the others are that vector shuffled, one seeded permutation each."""
    base = np.concatenate([np.full(n_reference, -1.0 / n_reference), np.full(n_batch, 1.0 / n_batch)])
    shuffled = np.random.default_rng(seed).permuted(np.tile(base, (permutations, 1)), axis=1)
    return np.vstack([base[None, :], shuffled]).T.astype(np.float32)


def _quadratic_forms(k: np.ndarray, a: np.ndarray) -> np.ndarray:
    """a_j^T K a_j for every column j of a, in chunks of columns so K @ A stays small."""
    chunk = max(1, CHUNK_ELEMENTS // k.shape[0])
    out = np.empty(a.shape[1], dtype=np.float64)
    for start in range(0, a.shape[1], chunk):
        block = a[:, start:start + chunk]
        out[start:start + chunk] = np.sum(block * (k @ block), axis=0, dtype=np.float64)
    return out


def _permutation_p(observed: float, permuted: np.ndarray) -> float:
    # ties count as "at least as extreme"; the tolerance absorbs float32 noise between equal statistics
    tolerance = 1e-5 * max(abs(observed), float(np.max(np.abs(permuted))), 1e-30)
    return float((1 + np.sum(permuted >= observed - tolerance)) / (1 + permuted.size))


def mmd_test(reference: np.ndarray, batch: np.ndarray, bandwidth: float, permutations: int = 500,
             seed: int = 0) -> tuple[float, float]:
    """(biased MMD^2 with k(x, y) = exp(-||x - y||^2 / (2 bandwidth^2)), permutation p-value)."""
    reference, batch = _pair(reference, batch)
    if not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth}")
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    k = _rbf_kernel(np.vstack([reference, batch]), bandwidth)
    stats_ = _quadratic_forms(k, _permutation_weights(len(reference), len(batch), permutations, seed))
    return float(stats_[0]), _permutation_p(stats_[0], stats_[1:])


def _auc_scorer(reference: np.ndarray, batch: np.ndarray, folds: int, seed: int):
    """(x, domain labels, labels -> out-of-fold ROC AUC of a logistic regression telling batch rows from reference
    rows)."""
    # imported here: scikit-learn takes a second to import and only the benchmark's comparison needs it
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reference, batch = _pair(reference, batch)
    if min(len(reference), len(batch)) < folds or folds < 2:
        raise ValueError(f"{folds}-fold classifier test needs folds >= 2 and at least {folds} rows on each side")
    x = np.vstack([reference, batch])
    y = np.concatenate([np.zeros(len(reference), int), np.ones(len(batch), int)])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)

    def auc(labels: np.ndarray) -> float:
        scores = cross_val_predict(model, x, labels, cv=cv, method="decision_function")
        return float(roc_auc_score(labels, scores))

    return y, auc


def classifier_auc(reference: np.ndarray, batch: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """The out-of-fold ROC AUC of a domain classifier (0.5: it cannot tell the batch from the reference)."""
    y, auc = _auc_scorer(reference, batch, folds, seed)
    return auc(y)


def classifier_test(reference: np.ndarray, batch: np.ndarray, folds: int = 5, permutations: int = 50,
                    seed: int = 0) -> tuple[float, float]:
    """(out-of-fold ROC AUC of a logistic regression telling batch rows from reference rows, permutation p-value)."""
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    y, auc = _auc_scorer(reference, batch, folds, seed)
    rng = np.random.default_rng(seed)
    observed = auc(y)
    permuted = np.array([auc(rng.permutation(y)) for _ in range(permutations)])
    return observed, _permutation_p(observed, permuted)


def ks_test(reference: np.ndarray, batch: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (statistic, p-value), NaNs dropped."""
    r, b = (np.asarray(x, dtype=np.float64).ravel() for x in (reference, batch))
    r, b = r[~np.isnan(r)], b[~np.isnan(b)]
    if min(r.size, b.size) == 0:
        raise ValueError(f"ks_test: no values (empty, or all NaN): reference {r.size}, batch {b.size}")
    result = stats.ks_2samp(r, b)
    return float(result.statistic), float(result.pvalue)


def _merged_table(reference: Mapping[str, int], batch: Mapping[str, int]) -> tuple[list[str], np.ndarray, list[str]]:
    """(columns, 2 x K table, merged categories): categories with an expected count < MIN_EXPECTED become "other"."""
    names = sorted(set(reference) | set(batch))
    table = np.array([[reference.get(n, 0) for n in names], [batch.get(n, 0) for n in names]], dtype=np.float64)
    if (table < 0).any():
        raise ValueError("counts must be >= 0")
    rows = table.sum(axis=1)
    if (rows == 0).any():
        raise ValueError(f"counts_test needs counts on both sides (reference {rows[0]:g}, batch {rows[1]:g})")
    expected = np.outer(rows, table.sum(axis=0)) / rows.sum()
    rare = expected.min(axis=0) < MIN_EXPECTED
    keep = [n for n, r in zip(names, rare) if not r]
    columns, merged = table[:, ~rare], [n for n, r in zip(names, rare) if r]
    if merged:
        other = table[:, rare].sum(axis=1, keepdims=True)
        if np.outer(rows, other.sum()).min() / rows.sum() >= MIN_EXPECTED or not keep:
            columns, keep = np.hstack([columns, other]), keep + ["other"]
        else:   # still too rare: fold it into the smallest usable column rather than drop counts
            smallest = int(np.argmin(columns.sum(axis=0)))
            columns[:, smallest] += other[:, 0]
            keep[smallest] = f"{keep[smallest]}+other"
    return keep, columns, merged


def counts_test(reference: Mapping[str, int], batch: Mapping[str, int]) -> tuple[float, float]:
    """Chi-square test of homogeneity (statistic, p-value) of two count tables; (0.0, 1.0) with < 2 usable columns."""
    columns, table, _ = _merged_table(reference, batch)
    if len(columns) < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table)   # Yates' correction when 2 columns: conservative
    return float(result.statistic), float(result.pvalue)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion with k successes out of n."""
    if not (n >= 1 and 0 <= k <= n and 0 < confidence < 1):
        raise ValueError(f"clopper_pearson needs 0 <= k <= n, n >= 1, 0 < confidence < 1 (k={k}, n={n})")
    tail = (1 - confidence) / 2
    lower = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    upper = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return lower, upper


def _profile_size(profile: dict, side: str) -> int:
    """Number of texts in a profile; every part must have one entry per text."""
    sizes = {"embeddings": len(np.asarray(profile["embeddings"]))} if "embeddings" in profile else {}
    sizes |= {f"descriptor {n}": len(np.ravel(v)) for n, v in profile.get("descriptors", {}).items()}
    sizes |= {part: len(profile[part]) for part in ("labels", "confidence") if part in profile}
    if not sizes or set(sizes.values()) == {0}:
        raise ValueError(f"{side} profile is empty")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{side} profile parts have different lengths: {sizes}")
    return next(iter(sizes.values()))


def _label_counts(labels: list) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for text_labels in labels:   # one label given as a plain string is one label, not its characters
        counts.update(([text_labels] if isinstance(text_labels, str) else list(text_labels)) or [NONE_LABEL])
    return dict(sorted(counts.items()))


def _scalar_check(reference: np.ndarray, batch: np.ndarray, detail: dict) -> tuple[tuple[float, float] | None, dict]:
    """KS on one scalar per text, NaNs dropped; None (with a reason) when a side has fewer than 2 values."""
    r, b = (np.asarray(x, dtype=np.float64).ravel() for x in (reference, batch))
    r, b = r[~np.isnan(r)], b[~np.isnan(b)]
    detail = {**detail, "n_reference_values": r.size, "n_batch_values": b.size}
    if min(r.size, b.size) < 2:
        return None, {**detail, "reason": f"skipped: fewer than 2 values (reference {r.size}, batch {b.size})"}
    return ks_test(r, b), {**detail, "reference_mean": r.mean(), "batch_mean": b.mean(),
                           "reference_median": np.median(r), "batch_median": np.median(b)}


def assess(reference: dict, batch: dict, alpha: float = 0.05, permutations: int = 500, seed: int = 0,
           bandwidth: float | None = None) -> Decision:
    """All checks of two profiles, each at alpha / (number of checks run); drift when any check drifts."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    sizes = {"n_reference": _profile_size(reference, "reference"), "n_batch": _profile_size(batch, "batch")}
    for part in ("embeddings", "labels", "confidence"):
        if (part in reference) != (part in batch):   # a profile builder bug, not a drift
            raise ValueError(f"'{part}' is in only one of the two profiles")
    # (name, kind, test, (statistic, p) or None when the check could not run, detail)
    runs: list[tuple[str, str, str, tuple[float, float] | None, dict]] = []
    for name in sorted(set(reference.get("descriptors", {})) & set(batch.get("descriptors", {}))):
        result, detail = _scalar_check(reference["descriptors"][name], batch["descriptors"][name], sizes)
        runs.append((f"descriptor:{name}", "descriptor", "Kolmogorov-Smirnov", result, detail))
    if "labels" in reference:
        ref_c, batch_c = _label_counts(reference["labels"]), _label_counts(batch["labels"])
        runs.append(("prediction:labels", "prediction", "chi-square", counts_test(ref_c, batch_c), {
            **sizes, "reference_counts": ref_c, "batch_counts": batch_c,
            "reference_share": {k: v / sum(ref_c.values()) for k, v in ref_c.items()},
            "batch_share": {k: v / sum(batch_c.values()) for k, v in batch_c.items()},
            "merged_into_other": _merged_table(ref_c, batch_c)[2]}))
    if "confidence" in reference:
        result, detail = _scalar_check(reference["confidence"], batch["confidence"], sizes)
        runs.append(("prediction:confidence", "prediction", "Kolmogorov-Smirnov", result, detail))
    k = sum(result is not None for _, _, _, result, _ in runs) + ("embeddings" in reference)
    if k == 0:
        raise ValueError("nothing to check: no check could run on these profiles")
    per_check = alpha / k
    if "embeddings" in reference:   # last, when k is known: enough permutations to reach half the per-check level
        permutations = max(permutations, math.ceil(2 / per_check))
        ref_e, batch_e = _pair(reference["embeddings"], batch["embeddings"])
        h = median_bandwidth(ref_e, seed=seed) if bandwidth is None else float(bandwidth)
        runs.insert(0, ("embedding", "embedding", "MMD^2 (RBF kernel), permutation p-value",
                        mmd_test(ref_e, batch_e, h, permutations, seed),
                        {**sizes, "bandwidth": h, "permutations": permutations}))
    checks = []
    for name, kind, test, result, detail in runs:
        statistic, p = result if result is not None else (math.nan, math.nan)
        checks.append(CheckResult(name, kind, test, statistic, p, per_check, bool(p < per_check), detail))
    rule = (f"drift when any of the {k} checks has p < {alpha:g}/{k} = {per_check:.4g} "
            f"(Bonferroni, family-wise alpha {alpha:g})")
    return Decision(any(c.drift for c in checks), rule, alpha, checks)
