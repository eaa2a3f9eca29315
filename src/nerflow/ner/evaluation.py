"""The evaluate stage of token classification (the task type's `evaluate` entry): the best weights on validation
and test, scored entity by entity (nerflow.ner.evaluate), with reports, the type confusion plot, the predictions
next to the gold tags and the error analysis (nerflow.ner.errors: `errors.html`, `<split>_errors.json`) as
artifacts. The scoring itself stays in nerflow.ner.evaluate, which training and the promotion gate use too; this
module is the part only the evaluate stage runs."""
from __future__ import annotations

from pathlib import Path

from nerflow.ner import errors
from nerflow.ner.evaluate import plot_type_confusion, score, type_confusion, write_predictions_conll

# metric names per split (docs/metrics.md): `val/f1` etc. are the per-epoch history the training loop logs, so the
# registered (best) weights' validation scores are `val/best_*`; per type only F1 there, the full set on test
METRIC_NAMES = {"validation": ("val/best_", ("f1",)), "test": ("test/", ("f1", "precision", "recall", "support"))}


def evaluate_model(model_dir: Path, validated: Path, windows: Path, cfg, out: Path) -> dict[str, float]:
    """The best weights on validation and test: scores, reports, the type confusion plot and the predictions in
    CoNLL format next to the gold tags, written into `out`; returns the metrics."""
    import json

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nerflow.ner.data import read_split

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForTokenClassification.from_pretrained(model_dir).to(device)
    pad_id = AutoTokenizer.from_pretrained(model_dir).pad_token_id or 0
    labels = json.loads((validated / "labels.json").read_text())
    train = read_split(validated / "train.jsonl")
    seen_in_train = errors.entity_strings([s.tokens for s in train], [s.tags for s in train])
    metrics: dict[str, float] = {}
    analyses = []
    for split, (prefix, per_type) in METRIC_NAMES.items():
        sentences = read_split(validated / f"{split}.jsonl")
        tags = predict_split(model, sentences, windows / split, labels, pad_id, cfg, device)
        gold = [s.tags for s in sentences]
        scores = score(gold, tags)
        (out / f"{split}_report.txt").write_text(scores.report_text)
        (out / f"{split}_report.json").write_text(json.dumps(scores.report, indent=1))
        write_predictions_conll(sentences, tags, out / f"{split}_predictions.conll")
        plot_type_confusion(*type_confusion(gold, tags), out / f"{split}_confusion.png")
        metrics |= scores.metrics(prefix, per_type)
        analysis = errors.analyse([s.tokens for s in sentences], gold, tags, seen_in_train, split,
                                  f"{split}_predictions.conll")
        (out / f"{split}_errors.json").write_text(json.dumps(analysis.to_json(), indent=1))
        analyses.append(analysis)
        if split == "test":
            metrics |= analysis.metrics("test/")
    (out / "errors.html").write_text(errors.to_html(analyses, "Where the model fails"), encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def predict_split(model, sentences: list, windows: Path, labels: list[str], pad_id: int, cfg, device: str = "cpu"
                  ) -> list[list[str]]:
    """The tags of one split's sentences from the tokenize stage's windows: what the evaluate stage scores, and the
    export stage for each runtime (`model` a transformers model or a nerflow.runtimes.OnnxModel)."""
    from nerflow.ner.predict import predict_windows
    from nerflow.ner.tokenization import load_windows

    tags, _ = predict_windows(model, load_windows(windows), [len(s.tokens) for s in sentences],
                              dict(enumerate(labels)), pad_id, cfg.batch_size, device, batch_tokens=cfg.batch_tokens)
    return tags
