"""Text classification behind the task-type seam (nerflow.task_types): CSV/TSV, JSON lines, one folder per label or
a HF dataset; single- or multi-label; long texts cut by choice or read as windows; accuracy, macro/micro F1,
calibration; `{"label", "score", "scores"}` per text when served.

A descriptor only: each stage's code is in the entry module named below, imported by that stage alone."""
from __future__ import annotations

import re

from nerflow.textcat.config import TextcatConfig


class TextClassification:
    name = "text-classification"
    unit = "texts"
    headline = "macro F1"
    class_word = "class"
    class_column = "class"
    hit_key = "labels"
    config = TextcatConfig
    entries = {"validate": "nerflow.textcat.validate", "tokenize": "nerflow.textcat.tokenization",
               "train": "nerflow.textcat.training", "evaluate": "nerflow.textcat.evaluation",
               "export": "nerflow.textcat.export",
               "register": "nerflow.textcat.serving", "promote": "nerflow.textcat.scoring",
               "predict": "nerflow.textcat.predict", "explain": "nerflow.textcat.explain",
               "reference": "nerflow.textcat.reference",
               "baseline": "nerflow.textcat.baseline"}   # `nerflow curve --baseline`: TF-IDF + logistic regression
    empty_answer: list | None = None   # a classifier answers for every text, empty or not
    # `nerflow tune`'s default space beyond the shared keys (nerflow.tuning.COMMON_SPACE): whole reviews and
    # documents are longer than sentences, so larger token budgets per step
    tune_space = {"train.batch_tokens": {"choices": [1024, 2048, 4096]}}

    def answer_fields(self, answer) -> dict:
        return dict(answer)

    def answer_counts(self, fields: dict) -> dict[str, int]:
        labels = fields.get("labels", [fields["label"]] if "label" in fields else [])
        # MLflow metric names allow letters, digits and _-./ only; labels come from user data
        return {f"label_{re.sub(r'[^A-Za-z0-9_./ -]', '_', str(label))}": 1 for label in labels}

    def answer_labels(self, fields: dict) -> tuple[list[str], float | None]:
        """The label(s), and how sure: the top probability (single-label), or the mean over labels of the
        probability of the side each one fell on (multi-label), for the drift checks."""
        if "labels" in fields:
            chosen = set(fields["labels"])
            sure = [float(p) if label in chosen else 1.0 - float(p) for label, p in fields.get("scores", {}).items()]
            return list(fields["labels"]), (sum(sure) / len(sure) if sure else None)
        return [fields["label"]], float(fields["score"])

    def describe_counts(self, counts: dict[str, int]) -> str:
        return ", ".join(f"{name.removeprefix('label_')} {n}" for name, n in sorted(counts.items())) or "no labels"


TASK = TextClassification()
