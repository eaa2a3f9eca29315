"""Token classification (NER) behind the task-type interface (nerflow.task_types): CoNLL / JSON lines / HF readers,
IOB2 validation, word windows, entity-level seqeval scores, spans with character offsets when served."""
from __future__ import annotations

import json
from pathlib import Path

from nerflow.config import DataConfig, PipelineConfig, TokenizeConfig
from nerflow.data import SPLITS
from nerflow.scoring import LegacyRequest
from nerflow.ner import data, scoring, validate


class TokenClassification:
    name = "token-classification"
    unit = "sentences"
    headline = "micro F1 (strict IOB2)"
    class_word = "entity type"
    keys = {"data": frozenset({"format", "hf_dataset", "split", "limit_train", "limit_validation", "limit_test",
                               "tag_column", "scheme", "invalid_iob2", "min_tokens", "max_tokens"}),
            "tokenize": frozenset({"max_length", "stride", "label_all_subtokens"}),
            "evaluate": frozenset({"batch_size", "batch_tokens"})}
    modules = {"validate": ["ner/data", "ner/schemes", "ner/validate"],
               "tokenize": ["ner/data", "ner/tokenization"],
               "train": ["ner/training", "ner/predict", "ner/tokenization", "ner/evaluate", "ner/schemes", "ner/data"],
               "evaluate": ["ner/evaluate", "ner/predict", "ner/tokenization", "ner/schemes", "ner/data"],
               "register": ["ner/serving", "ner/predict", "ner/tokenization", "ner/schemes"],
               "promote": ["ner/evaluate", "ner/schemes", "ner/data", "ner/scoring"]}
    trainer = "nerflow.ner.training"

    def data_fingerprint(self, cfg: DataConfig) -> str:
        if cfg.format == "hf":
            return f"hf:{cfg.hf_dataset}"
        files = data.input_files(cfg)
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise data.DataError(f"{missing[0]}: file not found")
        return data.hash_files(list(files.values()))

    def load_corpus(self, cfg: DataConfig) -> dict[str, list]:
        return data.load_corpus(cfg)

    def validate(self, corpus: dict[str, list], cfg: DataConfig):
        return validate.validate_corpus(corpus, cfg)

    def write_validated(self, corpus: dict[str, list], cfg: DataConfig, out: Path) -> None:
        canonical = {split: data.canonicalize(sentences, cfg) for split, sentences in corpus.items()}
        for split, sentences in canonical.items():
            data.write_split(sentences, out / f"{split}.jsonl")
        (out / "labels.json").write_text(json.dumps(data.label_list(canonical)))

    def split_sizes(self, validated: Path) -> dict[str, int]:
        return {s: len(data.read_split(validated / f"{s}.jsonl")) for s in SPLITS}

    def tokenize(self, tokenizer, validated: Path, cfg: TokenizeConfig, out: Path) -> dict[str, float]:
        from nerflow.ner import tokenization

        corpus = {split: data.read_split(validated / f"{split}.jsonl") for split in SPLITS}
        labels = json.loads((validated / "labels.json").read_text())
        return tokenization.tokenize_corpus(tokenizer, corpus, labels, cfg, out)

    def job(self, cfg: PipelineConfig) -> dict:
        return {"meta": {"max_length": cfg.tokenize.max_length, "stride": cfg.tokenize.stride}}

    def evaluate(self, model_dir: Path, validated: Path, tokenized: Path, cfg: PipelineConfig, out: Path
                 ) -> dict[str, float]:
        from nerflow.ner import evaluate

        return evaluate.evaluate_model(model_dir, validated, tokenized, cfg.evaluate, out)

    def servable(self):
        from nerflow.ner import serving

        return serving.NerModel(), serving.SIGNATURE, serving.EXAMPLE

    # the served-scorer protocol (nerflow.scoring); the code is in nerflow.ner.scoring
    def examples(self, split: Path) -> list[dict]:
        return scoring.examples(split)

    def gold(self, examples: list[dict]) -> list:
        return scoring.gold(examples)

    def legacy_request(self, examples: list[dict]) -> LegacyRequest:
        return scoring.legacy_request(examples)

    def from_legacy(self, examples: list[dict], answers: list) -> list:
        return scoring.from_legacy(examples, answers)

    def gate_tables(self, gold: list, scored: dict, versions: tuple[str, str | None]):
        from nerflow.ner import evaluate

        return evaluate.gate_tables(gold, scored, versions)

    def predict_fields(self, result) -> dict:
        return {"entities": list(result)}

    hit_key = "entities"

    def hits(self, gold: list, served: dict) -> set:
        from nerflow.ner.schemes import entity_spans

        predicted = {(i, *e) for i, seq in enumerate(served["pred"]) for e in entity_spans(seq)}
        return predicted & {(i, *e) for i, seq in enumerate(gold) for e in entity_spans(seq)}

    def gold_count(self, gold: list) -> int:
        from nerflow.ner.schemes import entity_spans

        return sum(len(entity_spans(seq)) for seq in gold)


TASK = TokenClassification()
