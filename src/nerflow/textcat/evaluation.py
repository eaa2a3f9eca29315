"""The evaluate stage for text classification: the trained model on validation and test, scored from its
probabilities (nerflow.textcat.evaluate), with the reports, a confusion matrix, a reliability diagram, the
predictions and the worst-classified texts as artifacts; and the promotion gate's score tables from served
predictions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nerflow.textcat import evaluate
from nerflow.textcat.config import TextcatEvaluateConfig as EvaluateConfig
from nerflow.textcat.data import read_split
from nerflow.textcat.predict import META_FILE, predict_logits, to_probabilities
from nerflow.textcat.tokenization import load_segments

# per split: the metric prefix and per-class fields (docs/metrics.md); validation keeps only per-class F1
METRIC_NAMES = {"validation": ("val/best_", ("f1",)), "test": ("test/", ("f1", "precision", "recall", "support"))}


def evaluate_model(model_dir: Path, validated: Path, tokenized: Path, cfg: EvaluateConfig, out: Path
                   ) -> dict[str, float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    meta = json.loads((Path(model_dir) / META_FILE).read_text())
    labels, multi = meta["labels"], meta["multi_label"]
    thresholds = np.asarray(meta["thresholds"]) if multi and meta.get("thresholds") else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device)
    pad_id = AutoTokenizer.from_pretrained(model_dir).pad_token_id or 0
    metrics: dict[str, float] = {}
    for split, (prefix, fields) in METRIC_NAMES.items():
        docs = read_split(validated / f"{split}.jsonl")
        logits = predict_logits(model, load_segments(tokenized / split), len(docs), meta["pool"], pad_id,
                                cfg.batch_size, device, batch_tokens=cfg.batch_tokens)
        probs = to_probabilities(logits, multi)
        gold = [d.labels for d in docs]
        scores = evaluate.score(gold, probs, labels, multi, thresholds, cfg.calibration_bins)
        write_artifacts(out, split, docs, gold, probs, labels, multi, thresholds, scores, cfg)
        metrics |= scores.metrics(prefix, fields)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def write_artifacts(out: Path, split: str, docs, gold, probs, labels, multi, thresholds, scores, cfg) -> None:
    (out / f"{split}_report.txt").write_text(scores.report_text)
    (out / f"{split}_report.json").write_text(json.dumps(scores.report, indent=1))
    predicted = evaluate.predicted_labels(probs, labels, multi, thresholds)
    names, matrix = evaluate.confusion(gold, predicted, labels, multi_label=multi)
    evaluate.confusion_png(names, matrix, out / f"{split}_confusion.png")
    evaluate.reliability_png(*evaluate.calibration(probs, gold, labels, multi), cfg.calibration_bins,
                             out / f"{split}_reliability.png")
    with (out / f"{split}_predictions.jsonl").open("w", encoding="utf-8") as f:
        for doc, pred, row in zip(docs, predicted, probs):
            f.write(json.dumps({"source": doc.source, "gold": doc.labels, "predicted": pred,
                                "scores": {label: round(float(p), 6) for label, p in zip(labels, row)}},
                               ensure_ascii=False) + "\n")
    worst = evaluate.worst_examples([d.text for d in docs], [d.source for d in docs], gold, probs, labels, multi,
                                    cfg.worst_examples, thresholds)
    (out / f"{split}_worst.json").write_text(json.dumps(worst, indent=1, ensure_ascii=False))


def served_table(gold: list[list[str]], served: dict) -> tuple[dict, list[str]]:
    """Macro F1 and per-class scores of one version's served labels. Classes of the gold data the model does not
    know count as classes it never predicts."""
    labels = list(served["labels"]) + sorted({label for g in gold for label in g} - set(served["labels"]))
    index = {label: j for j, label in enumerate(labels)}
    decided = np.zeros((len(gold), len(labels)))
    for i, predicted in enumerate(served["pred"]):
        decided[i, [index[label] for label in predicted]] = 1.0
    multi = bool(served.get("multi_label"))
    scores = evaluate.score(gold, decided, labels, multi)
    return {"f1": scores.macro_f1, "per_type": scores.per_class}, labels


def gate_tables(gold: list[list[str]], scored: dict, versions: tuple[str, str | None]):
    """Tables of (challenger, champion) for nerflow.promotion.decide, and tables over the shared classes only when
    the two models know different label sets (macro F1 over those classes)."""
    challenger, champion = versions
    full = {v: served_table(gold, scored[v])[0] for v in versions if v is not None}
    restricted = None
    if champion is not None and set(scored[challenger]["labels"]) != set(scored[champion]["labels"]):
        shared = sorted(set(scored[challenger]["labels"]) & set(scored[champion]["labels"]))
        restricted = tuple({"f1": float(np.mean([full[v]["per_type"][c]["f1"] for c in shared])) if shared else 0.0,
                            "per_type": {c: full[v]["per_type"][c] for c in shared}, "types": shared}
                           for v in versions)
    return full[challenger], full.get(champion) if champion else None, restricted
