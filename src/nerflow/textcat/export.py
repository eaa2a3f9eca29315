"""The export stage of text classification (the task type's `export` entry): each runtime scored exactly as the
evaluate stage scores the PyTorch model (the tokenize stage's segments, window pooling, thresholds, macro F1:
nerflow.textcat.evaluation.predict_split), throughput in texts per second, a request one raw text through the served
classifier. The export itself and the choice: nerflow.export."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nerflow.export import export_runtimes
from nerflow.textcat import evaluate
from nerflow.textcat.data import read_split
from nerflow.textcat.evaluation import predict_split
from nerflow.textcat.predict import META_FILE


class TextcatExport:
    unit = "texts"

    def __init__(self, model_dir: Path, validated: Path, segments: Path, evaluate_cfg):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.auto_class = AutoModelForSequenceClassification
        self.model_dir, self.segments, self.cfg = Path(model_dir), Path(segments), evaluate_cfg
        self.meta = json.loads((self.model_dir / META_FILE).read_text())
        self.pad_id = AutoTokenizer.from_pretrained(model_dir).pad_token_id or 0
        self.splits = {split: read_split(Path(validated) / f"{split}.jsonl") for split in ("validation", "test")}

    def score(self, model, split: str) -> tuple[float, int]:
        docs, meta = self.splits[split], self.meta
        probs = predict_split(model, len(docs), self.segments / split, meta, self.pad_id, self.cfg)
        thresholds = np.asarray(meta["thresholds"]) if meta["multi_label"] and meta.get("thresholds") else None
        scores = evaluate.score([d.labels for d in docs], probs, meta["labels"], meta["multi_label"], thresholds)
        return scores.macro_f1, len(docs)

    def answerer(self, model):
        from nerflow.textcat.predict import Classifier

        return Classifier.load(self.model_dir, device="cpu", model=model).predict_text

    def requests(self, n: int) -> list[str]:
        return [d.text for d in self.splits["validation"][:n]]


def export_model(model_dir: Path, validated: Path, segments: Path, cfg, out: Path,
                 student_dir: Path | None = None) -> dict:
    """`cfg`: the run's config (its `export` and `evaluate` sections); `student_dir`: the distill stage's student."""
    return export_runtimes(Path(model_dir), TextcatExport(model_dir, validated, segments, cfg.evaluate), cfg.export,
                           out, student_dir)
