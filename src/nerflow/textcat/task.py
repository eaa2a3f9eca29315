"""Text classification behind the task-type interface (nerflow.task_types): CSV/TSV, JSON lines, one folder per label or
a HF dataset; single- or multi-label; long texts cut by choice or read as windows; accuracy, macro/micro F1,
calibration; `{"label", "score", "scores"}` per text when served."""
from __future__ import annotations

import json
from pathlib import Path

from nerflow.config import DataConfig, PipelineConfig, TokenizeConfig
from nerflow.data import SPLITS
from nerflow.scoring import LegacyRequest
from nerflow.textcat import data, scoring, validate


class TextClassification:
    name = "text-classification"
    unit = "texts"
    headline = "macro F1"
    class_word = "class"
    keys = {"data": frozenset({"format", "hf_dataset", "split", "limit_train", "limit_validation", "limit_test",
                               "text_column", "label_column", "labels", "multi_label", "label_separator",
                               "min_class_examples"}),
            "tokenize": frozenset({"max_length", "stride", "long_documents", "head_share", "pool",
                                   "window_training"}),
            "evaluate": frozenset({"batch_size", "batch_tokens", "calibration_bins", "worst_examples"})}
    modules = {"validate": ["textcat/data", "textcat/validate"],
               "tokenize": ["textcat/data", "textcat/tokenization"],
               "train": ["textcat/training", "textcat/predict", "textcat/tokenization", "textcat/evaluate",
                         "textcat/data"],
               "evaluate": ["textcat/evaluate", "textcat/predict", "textcat/tokenization", "textcat/data"],
               "register": ["textcat/serving", "textcat/predict", "textcat/tokenization"],
               "promote": ["textcat/evaluate", "textcat/data", "textcat/scoring"]}
    trainer = "nerflow.textcat.training"

    def data_fingerprint(self, cfg: DataConfig) -> str:
        return data.fingerprint(cfg)

    def load_corpus(self, cfg: DataConfig) -> dict[str, list]:
        return data.load_corpus(cfg)

    def validate(self, corpus: dict[str, list], cfg: DataConfig):
        return validate.validate_corpus(corpus, cfg)

    def write_validated(self, corpus: dict[str, list], cfg: DataConfig, out: Path) -> None:
        for split, docs in corpus.items():
            data.write_split(docs, out / f"{split}.jsonl")
        (out / "labels.json").write_text(json.dumps(data.label_list(corpus, cfg)))
        (out / "task.json").write_text(json.dumps({"multi_label": cfg.multi_label}))

    def split_sizes(self, validated: Path) -> dict[str, int]:
        return {s: len(data.read_split(validated / f"{s}.jsonl")) for s in SPLITS}

    def tokenize(self, tokenizer, validated: Path, cfg: TokenizeConfig, out: Path) -> dict[str, float]:
        from nerflow.textcat import tokenization

        corpus = {split: data.read_split(validated / f"{split}.jsonl") for split in SPLITS}
        labels = json.loads((validated / "labels.json").read_text())
        return tokenization.tokenize_corpus(tokenizer, corpus, labels, cfg, out)

    def job(self, cfg: PipelineConfig) -> dict:
        t = cfg.tokenize
        return {"tokenize": t.model_dump(mode="json"), "multi_label": cfg.data.multi_label,
                "meta": {"max_length": t.max_length, "stride": t.stride, "long_documents": t.long_documents,
                         "head_share": t.head_share, "pool": t.pool, "multi_label": cfg.data.multi_label}}

    def evaluate(self, model_dir: Path, validated: Path, tokenized: Path, cfg: PipelineConfig, out: Path
                 ) -> dict[str, float]:
        from nerflow.textcat import evaluation

        return evaluation.evaluate_model(model_dir, validated, tokenized, cfg.evaluate, out)

    def servable(self):
        from nerflow.textcat import serving

        return serving.TextClassifierModel(), serving.SIGNATURE, serving.EXAMPLE

    # the served-scorer protocol (nerflow.scoring); the code is in nerflow.textcat.scoring
    def examples(self, split: Path) -> list[dict]:
        return scoring.examples(split)

    def gold(self, examples: list[dict]) -> list:
        return scoring.gold(examples)

    def legacy_request(self, examples: list[dict]) -> LegacyRequest:
        return scoring.legacy_request(examples)

    def from_legacy(self, examples: list[dict], answers: list) -> list:
        return scoring.from_legacy(examples, answers)

    def gate_tables(self, gold: list, scored: dict, versions: tuple[str, str | None]):
        from nerflow.textcat import evaluation

        return evaluation.gate_tables(gold, scored, versions)

    def predict_fields(self, result) -> dict:
        return dict(result)

    hit_key = "labels"

    def hits(self, gold: list, served: dict) -> set:
        return {(i, label) for i, (g, p) in enumerate(zip(gold, served["pred"])) for label in set(g) & set(p)}

    def gold_count(self, gold: list) -> int:
        return sum(len(g) for g in gold)


TASK = TextClassification()
