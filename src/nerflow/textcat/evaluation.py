"""The evaluate stage for text classification: the trained model on validation and test, scored from its
probabilities (nerflow.textcat.evaluate), with the reports, a confusion matrix, a reliability diagram, the
predictions, the worst-classified texts and the error analysis (nerflow.textcat.errors: accuracy by length, the most
confused label pairs; `errors.html`, `<split>_errors.json`) as artifacts. (The promotion gate's score tables from served
predictions: nerflow.textcat.scoring.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nerflow import reliability
from nerflow.textcat import errors, evaluate, selection
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
    analyses = []
    for split, (prefix, fields) in METRIC_NAMES.items():
        docs = read_split(validated / f"{split}.jsonl")
        probs = predict_split(model, len(docs), tokenized / split, meta, pad_id, cfg, device)
        gold = [d.labels for d in docs]
        scores = evaluate.score(gold, probs, labels, multi, thresholds, cfg.calibration_bins)
        analyses.append(write_artifacts(out, split, docs, gold, probs, labels, multi, thresholds, scores, cfg))
        metrics |= scores.metrics(prefix, fields)
        if multi:   # threshold-free: what chose the training epoch (nerflow.textcat.selection)
            metrics[f"{prefix}average_precision"] = selection.macro_average_precision(gold, probs, labels)
    (out / "errors.html").write_text(errors.to_html(analyses, "Where the model fails"), encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def predict_split(model, n_docs: int, segments: Path, meta: dict, pad_id: int, cfg: EvaluateConfig,
                  device: str = "cpu") -> np.ndarray:
    """Per-document probabilities of one split from the tokenize stage's segments: what the evaluate stage scores,
    and the export stage for each runtime (`model` a transformers model or a nerflow.runtimes.OnnxModel)."""
    logits = predict_logits(model, load_segments(segments), n_docs, meta["pool"], pad_id, cfg.batch_size, device,
                            batch_tokens=cfg.batch_tokens)
    return to_probabilities(logits, meta["multi_label"])


def write_artifacts(out: Path, split: str, docs, gold, probs, labels, multi, thresholds, scores, cfg
                    ) -> errors.TextErrors:
    (out / f"{split}_report.txt").write_text(scores.report_text)
    (out / f"{split}_report.json").write_text(json.dumps(scores.report, indent=1))
    predicted = evaluate.predicted_labels(probs, labels, multi, thresholds)
    names, matrix = evaluate.confusion(gold, predicted, labels, multi_label=multi)
    evaluate.confusion_png(names, matrix, out / f"{split}_confusion.png")
    reliability.reliability_png(*evaluate.calibration(probs, gold, labels, multi), cfg.calibration_bins,
                             out / f"{split}_reliability.png")
    with (out / f"{split}_predictions.jsonl").open("w", encoding="utf-8") as f:
        for doc, pred, row in zip(docs, predicted, probs):
            f.write(json.dumps({"source": doc.source, "gold": doc.labels, "predicted": pred,
                                "scores": {label: round(float(p), 6) for label, p in zip(labels, row)}},
                               ensure_ascii=False) + "\n")
    worst = evaluate.worst_examples([d.text for d in docs], [d.source for d in docs], gold, probs, labels, multi,
                                    cfg.worst_examples, thresholds)
    (out / f"{split}_worst.json").write_text(json.dumps(worst, indent=1, ensure_ascii=False))
    analysis = errors.analyse([d.text for d in docs], [d.source for d in docs], gold, predicted, multi, split,
                              f"{split}_predictions.jsonl")
    (out / f"{split}_errors.json").write_text(json.dumps(analysis.to_json(), indent=1, ensure_ascii=False))
    return analysis
