"""How well predicted probabilities are calibrated: the expected calibration error and the reliability diagram, from
(confidence, correct) pairs (nerflow.textcat.evaluate.calibration makes them for text classification)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nerflow import plots


def _bin_stats(confidence: np.ndarray, correct: np.ndarray, bins: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins over [0, 1]: [k/bins, (k+1)/bins), the last closed at 1. Returns the edges, and per bin the
    count, accuracy and mean confidence (0 where empty)."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if bins < 1:
        raise ValueError(f"bins must be >= 1, found {bins}")
    if confidence.shape != correct.shape:
        raise ValueError(f"{confidence.size} confidences but {correct.size} correctness values")
    if confidence.size and (confidence.min() < 0 or confidence.max() > 1):
        raise ValueError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    nonzero = np.maximum(counts, 1)
    accuracy = np.bincount(which, weights=correct, minlength=bins) / nonzero
    mean_conf = np.bincount(which, weights=confidence, minlength=bins) / nonzero
    return edges, counts, accuracy, mean_conf


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Sum over equal-width bins of (share of items in the bin) * |accuracy - mean confidence|; bins are
    [k/bins, (k+1)/bins) with the last closed at 1. No items -> 0.0 (nothing is miscalibrated)."""
    _, counts, accuracy, mean_conf = _bin_stats(confidence, correct, bins)
    total = counts.sum()
    return float((counts * np.abs(accuracy - mean_conf)).sum() / total) if total else 0.0


def reliability_png(confidence: np.ndarray, correct: np.ndarray, bins: int, path: Path) -> None:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration, the item count
    over each bar (a wild bar on 3 items is noise), ECE in the title."""
    edges, counts, accuracy, _ = _bin_stats(confidence, correct, bins)
    ece = expected_calibration_error(confidence, correct, bins)
    fig = plots.new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    width = 1.0 / bins
    ax.bar(edges[:-1], accuracy, width=width, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for left, n, acc in zip(edges[:-1], counts, accuracy):
        if n:
            ax.text(left + width / 2, min(acc + 0.02, 1.02), str(int(n)), ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE = {ece:.4f}, {int(counts.sum())} items)")
    ax.legend(loc="upper left")
    plots.save(fig, path)
