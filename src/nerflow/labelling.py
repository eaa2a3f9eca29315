"""Which texts of a drifted batch to send to annotators first (issue 26: drift -> texts to label -> new labels ->
retraining -> the gate). Plain numpy on a batch's drift profile (nerflow.drift_profile); flows/drift_check.py writes
the batch out as JSON lines on the check's MLflow run when it finds drift.

A text is worth labelling when it is **in the drifted region** and **the champion is unsure of it**:

- in the drifted region: the MMD witness function, w(x) = mean_b k(x, b) - mean_r k(x, r) with the drift check's
  RBF kernel, is positive where the batch has more mass than the reference (texts of the new kind) and negative
  where the reference does (texts like what the model was validated on, which teach it little);
- unsure: the served model's confidence (nerflow.drift_profile), low first; a text without a prediction counts as
  unsure (an NER text with no entity found may be one it cannot read);
- spread: after the best-ranked text, each next one maximises its distance to those chosen (in embedding space)
  times (0.5 + how worth it is, 0 to 1), so one cluster of near duplicates (a feed repeating a headline) does not
  fill the batch and a rarer new kind gets in.
"""
from __future__ import annotations

import numpy as np

from nerflow.drift_calibration import _rbf


def witness(batch_embeddings: np.ndarray, reference_embeddings: np.ndarray, bandwidth: float) -> np.ndarray:
    """The MMD witness at each batch text: positive where the batch is denser than the reference."""
    return (_rbf(batch_embeddings, batch_embeddings, bandwidth).mean(axis=1)
            - _rbf(batch_embeddings, reference_embeddings, bandwidth).mean(axis=1))


def choose(batch: dict, reference: dict, n: int, bandwidth: float) -> list[int]:
    """Rows of `batch` (a drift profile) to label first, most worth it first: at most `n`, only texts in the drifted
    region (positive witness)."""
    if n < 1:
        raise ValueError(f"a labelling batch needs n >= 1, not {n}")
    w = witness(batch["embeddings"], reference["embeddings"], bandwidth)
    confidence = np.nan_to_num(np.asarray(batch["confidence"], dtype=np.float64), nan=0.0)
    drifted = np.flatnonzero(w > 0)
    if drifted.size == 0:
        return []
    # rank within the drifted region: far into it and unsure both count, neither alone decides
    rank = np.argsort(np.argsort(-w[drifted])) + np.argsort(np.argsort(confidence[drifted]))
    worth = 1.0 - np.argsort(np.argsort(rank, kind="stable")) / max(len(drifted) - 1, 1)   # 1: the best-ranked
    emb = np.asarray(batch["embeddings"], dtype=np.float64)[drifted]
    chosen = [int(np.argmax(worth))]   # the best-ranked, then far from those chosen and worth it, together
    distance = np.linalg.norm(emb - emb[chosen[0]], axis=1)
    while len(chosen) < min(n, len(drifted)):
        nxt = int(np.argmax(distance * (0.5 + worth)))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(emb - emb[nxt], axis=1))
    candidates = drifted
    return [int(candidates[k]) for k in chosen]


def records(docs: list[dict], batch: dict, rows: list[int], witness_values: np.ndarray) -> list[dict]:
    """The JSON lines an annotation tool imports: each chosen document's fields, what the champion predicted, how
    sure it was, and how far into the drifted region the text lies."""
    out = []
    for row in rows:
        confidence = float(batch["confidence"][row])
        out.append({**docs[row], "predicted": list(batch["labels"][row]),
                    "confidence": None if np.isnan(confidence) else round(confidence, 4),
                    "drift_witness": round(float(witness_values[row]), 6)})
    return out
