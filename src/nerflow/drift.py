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

Why Bonferroni: each check run alone at level alpha raises a false alarm with probability alpha; k checks at once
raise at least one with probability 1 - (1 - alpha)^k when they are independent (0.34 for k = 8 at 0.05), and up to
k * alpha in general. Running each at alpha / k keeps the family-wise false-alarm rate <= alpha under any
dependence between the checks. The price is power: correlated checks (descriptors and embeddings often are) make it
conservative.

The tests themselves (MMD with its permutation p-value, Kolmogorov-Smirnov, chi-square, and why each) are in
nerflow.two_sample; this module turns two profiles into checks and one decision.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from nerflow.two_sample import check_pair, counts_test, ks_test, median_bandwidth, merged_table, mmd_test

NONE_LABEL = "(none)"   # the category of a text with no predicted label


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
            "merged_into_other": merged_table(ref_c, batch_c)[2]}))
    if "confidence" in reference:
        result, detail = _scalar_check(reference["confidence"], batch["confidence"], sizes)
        runs.append(("prediction:confidence", "prediction", "Kolmogorov-Smirnov", result, detail))
    k = sum(result is not None for _, _, _, result, _ in runs) + ("embeddings" in reference)
    if k == 0:
        raise ValueError("nothing to check: no check could run on these profiles")
    per_check = alpha / k
    if "embeddings" in reference:   # last, when k is known: enough permutations to reach half the per-check level
        permutations = max(permutations, math.ceil(2 / per_check))
        ref_e, batch_e = check_pair(reference["embeddings"], batch["embeddings"])
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
