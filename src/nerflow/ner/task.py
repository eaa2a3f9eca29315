"""Token classification (NER) behind the task-type seam (nerflow.task_types): CoNLL / JSON lines / HF readers,
IOB2 validation, word windows, entity-level seqeval scores, spans with character offsets when served.

A descriptor only: each stage's code is in the entry module named below, imported by that stage alone."""
from __future__ import annotations

from nerflow.ner.config import NerConfig


class TokenClassification:
    name = "token-classification"
    unit = "sentences"
    headline = "micro F1 (strict IOB2)"
    class_word = "entity type"
    class_column = "type"
    hit_key = "entities"
    config = NerConfig
    entries = {"validate": "nerflow.ner.validate", "tokenize": "nerflow.ner.tokenization",
               "train": "nerflow.ner.training", "evaluate": "nerflow.ner.evaluation",
               "export": "nerflow.ner.export", "register": "nerflow.ner.serving",
               "promote": "nerflow.ner.scoring", "predict": "nerflow.ner.predict",
               "sample": "nerflow.ner.synthetic", "explain": "nerflow.ner.explain",
               "reference": "nerflow.ner.reference"}
    empty_answer: list | None = []    # a text without a word has no entity: the model is not asked
    # `nerflow tune`'s default space beyond the shared keys (nerflow.tuning.COMMON_SPACE): sentences are short
    tune_space = {"train.batch_tokens": {"choices": [512, 1024, 2048]}}

    def answer_fields(self, answer) -> dict:
        return {"entities": list(answer)}

    def answer_counts(self, fields: dict) -> dict[str, int]:
        return {"entities": len(fields.get("entities", ()))}

    def answer_labels(self, fields: dict) -> tuple[list[str], float | None]:
        """The entity types found, and the mean of their scores (None: no entity), for the drift checks."""
        entities = fields.get("entities", ())
        return [e["type"] for e in entities], (sum(e["score"] for e in entities) / len(entities) if entities
                                                else None)

    def describe_counts(self, counts: dict[str, int]) -> str:
        return f"{counts.get('entities', 0)} entities"


TASK = TokenClassification()
