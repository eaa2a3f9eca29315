"""The export stage of token classification (the task type's `export` entry): each runtime scored exactly as the
evaluate stage scores the PyTorch model (the tokenize stage's windows, Viterbi IOB2 decoding, seqeval strict micro
F1: nerflow.ner.evaluation.predict_split), throughput in words per second, a request one raw sentence through the
served predictor. The export itself and the choice: nerflow.export."""
from __future__ import annotations

import json
from pathlib import Path

from nerflow.export import export_runtimes
from nerflow.ner.data import read_split
from nerflow.ner.evaluate import score
from nerflow.ner.evaluation import predict_split


class NerExport:
    unit = "words"

    def __init__(self, model_dir: Path, validated: Path, windows: Path, evaluate_cfg):
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        self.auto_class = AutoModelForTokenClassification
        self.model_dir, self.windows, self.cfg = Path(model_dir), Path(windows), evaluate_cfg
        self.labels = json.loads((Path(validated) / "labels.json").read_text())
        self.pad_id = AutoTokenizer.from_pretrained(model_dir).pad_token_id or 0
        self.splits = {split: read_split(Path(validated) / f"{split}.jsonl") for split in ("validation", "test")}

    def score(self, model, split: str) -> tuple[float, int]:
        sentences = self.splits[split]
        tags = predict_split(model, sentences, self.windows / split, self.labels, self.pad_id, self.cfg)
        return score([s.tags for s in sentences], tags).f1, sum(len(s.tokens) for s in sentences)

    def answerer(self, model):
        from nerflow.ner.predict import Predictor

        return Predictor.load(self.model_dir, device="cpu", model=model).predict_text

    def requests(self, n: int) -> list[str]:
        return [" ".join(s.tokens) for s in self.splits["validation"][:n]]


def export_model(model_dir: Path, validated: Path, windows: Path, cfg, out: Path,
                 student_dir: Path | None = None) -> dict:
    """`cfg`: the run's config (its `export` and `evaluate` sections); `student_dir`: the distill stage's student."""
    return export_runtimes(Path(model_dir), NerExport(model_dir, validated, windows, cfg.evaluate), cfg.export, out,
                           student_dir)
