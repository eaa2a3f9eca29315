"""Two-sample tests on arrays, for the drift checks of nerflow.drift: MMD^2 with a permutation p-value, a domain
classifier's AUC, Kolmogorov-Smirnov, chi-square of homogeneity; and the Clopper-Pearson interval the drift
benchmark reports false-alarm rates with. numpy, scipy and scikit-learn only.

Why MMD with a permutation p-value, and no fixed threshold: the raw MMD^2 has no universal scale (it depends on the
model, the width of its embeddings, the bandwidth and the sample sizes), so a threshold tuned on one model misleads
on the next. Under "no drift" the pooled rows are exchangeable: the observed split into reference and batch is one of
many equally likely splits, so comparing the statistic with P random re-splits, p = (1 + #{permuted >= observed}) /
(1 + P), gives P(p <= alpha) <= alpha (an exact level), at any sample size, dimension or model, with no distributional
assumption. Exchangeable means independent texts on both sides: a batch of consecutive sentences from a few documents
differs from randomly drawn reference sentences even without drift. The bandwidth is the median pairwise distance of
the reference embeddings, so it is fixed for a reference and statistics of successive batches are comparable.

What the permutation count costs: the smallest p-value P permutations can give is 1 / (P + 1), so the embedding check
can only fire if 1 / (P + 1) < alpha / k (8 checks at 0.05: P >= 160); nerflow.drift.assess raises P to 2k / alpha
when the one asked for is fewer (the count used is in the check's detail). The p-value is valid for any P; more
permutations make it less random (its Monte Carlo standard error is about sqrt(p (1 - p) / P)) and so give more
power near the threshold. Time: one N x N kernel, O(N^2 d), then O(N^2 P) for the permutations (N = n_reference +
n_batch), as float32 matrix products; memory 4 N^2 bytes (27 MB at N = 2,600); 0.2-0.5 s at N = 2,600, d = 384,
P = 500 on 2 busy CPU cores. Each permutation of `classifier_test` refits a model k-fold, which is why MMD is the
default.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import stats
from scipy.spatial.distance import pdist

MIN_EXPECTED = 5        # the usual rule for the chi-square approximation
CHUNK_ELEMENTS = 1 << 22  # permutation columns per matrix product: keep K @ A's chunk near 16 MB of float32


def _matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{what}: expected a non-empty (rows, dims) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    return x


def check_pair(reference: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    reference, batch = check_pair(reference, batch)
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

    reference, batch = check_pair(reference, batch)
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


def merged_table(reference: Mapping[str, int], batch: Mapping[str, int]) -> tuple[list[str], np.ndarray, list[str]]:
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
    columns, table, _ = merged_table(reference, batch)
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
